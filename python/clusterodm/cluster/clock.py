"""Wall-clock milliseconds, the unit every ClusterODM timestamp uses."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def now_ms() -> int:
    """Milliseconds since the epoch (wall clock: values are persisted and compared across restarts)."""
    return time.time_ns() // 1_000_000
