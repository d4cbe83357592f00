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
