"""Waiting on a condition in tests: poll it, never sleep a fixed time, and say what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy, and return that; TimeoutError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def within(seconds: float, check: Callable[[], object], what: str) -> float:
    """Wait until `check()` holds, at most `seconds`; returns how long it took."""
    started = time.monotonic()
    wait_until(check, seconds, what)
    return time.monotonic() - started
