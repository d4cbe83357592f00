"""NodeODM task status codes (``status.code`` in task info)."""

from __future__ import annotations

from enum import IntEnum


class TaskStatus(IntEnum):
    QUEUED = 10
    RUNNING = 20
    FAILED = 30
    COMPLETED = 40
    CANCELED = 50


ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
"""Statuses counted in ``/info`` ``taskQueueCount``."""

RESTARTABLE_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.COMPLETED, TaskStatus.CANCELED})

_STATUS_KEY = b'"status":{"code":'


def status_code(info: object) -> int | None:
    """`status.code` of a parsed task-info object, or None when it has none."""
    status = info.get("status") if isinstance(info, dict) else None
    code = status.get("code") if isinstance(status, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def status_code_in(info_json: bytes) -> int | None:
    """`status.code` of a task-info answer, read without parsing the document (proxy hot path).

    The key cannot occur inside a JSON string (its quotes would be escaped there), and NodeODM
    writes JSON without spaces; an answer in another shape gives None.
    """
    start = info_json.find(_STATUS_KEY)
    if start < 0:
        return None
    digits = info_json[start + len(_STATUS_KEY) : start + len(_STATUS_KEY) + 2]
    return int(digits) if digits.isdigit() else None
