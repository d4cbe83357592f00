"""Logging with ClusterODM's (winston) level names."""

from __future__ import annotations

import logging

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


def setup_logging(level: str) -> None:
    """Console logging for the whole process; granian's own loggers follow the same level."""
    logging.addLevelName(VERBOSE, "VERBOSE")
    logging.addLevelName(SILLY, "SILLY")
    logging.basicConfig(
        level=_LEVELS[level],
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    # granian announces itself loudly at info; keep its chatter one level down unless debugging.
    granian_level = logging.DEBUG if _LEVELS[level] <= logging.DEBUG else logging.WARNING
    for name in ("_granian", "granian", "granian.access"):
        logging.getLogger(name).setLevel(granian_level)
    # httpx logs every request at info; our own logs say what matters about node traffic.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if _LEVELS[level] <= SILLY else logging.WARNING)
