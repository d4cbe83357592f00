"""Logging with ClusterODM's (winston) level names, as text lines or one JSON object a line.

The JSON form (`--log-format json`) carries the text line's fields, so log collectors (journald,
Loki, Elasticsearch...) get them without a parsing rule that breaks when a message holds a colon.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

VERBOSE = 15
SILLY = 5

_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "verbose": VERBOSE,
    "debug": logging.DEBUG,
    "silly": SILLY,
}

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (ISO 8601, UTC), `level`, `logger`, `message`, and
    `exception` (the traceback text) when the record carries one, `stack` for `stack_info`.

    Newlines inside a message or traceback stay escaped inside the JSON string, so a record is
    always exactly one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            # The same cache the text formatter uses, so a second handler does not format twice.
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: str, log_format: str = "text") -> None:
    """Console logging for the whole process; granian's own loggers follow the same level."""
    logging.addLevelName(VERBOSE, "VERBOSE")
    logging.addLevelName(SILLY, "SILLY")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=_LEVELS[level], handlers=[handler], force=True)
    # granian announces itself loudly at info; keep its chatter one level down unless debugging.
    granian_level = logging.DEBUG if _LEVELS[level] <= logging.DEBUG else logging.WARNING
    for name in ("_granian", "granian", "granian.access"):
        logging.getLogger(name).setLevel(granian_level)
    # httpx logs every request at info; our own logs say what matters about node traffic.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if _LEVELS[level] <= SILLY else logging.WARNING)
