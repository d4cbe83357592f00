"""Helpers shared by the pipeline tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from support.clusterodm import ClusterODM


def wait_until(check: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll `check` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout} s")


def tmp_entries(cluster: ClusterODM) -> list[str]:
    return sorted(p.name for p in cluster.tmp_dir.iterdir()) if cluster.tmp_dir.exists() else []
