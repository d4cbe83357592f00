"""Write-behind for small, frequent changes (output lines, task activity): batched, not lost.

A change marks its owner dirty and calls `schedule()`; one flush runs `delay_s` later for every
change made meanwhile, so a burst of changes costs one store round trip. Owners also flush at
shutdown, and on demand (maintenance), through the same coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from clusterodm.cluster.store import StoreUnavailable

log = logging.getLogger("clusterodm.store")


class DelayedFlush:
    """Runs `flush()` once, `delay_s` after the first `schedule()` since the last run."""

    def __init__(self, flush: Callable[[], Awaitable[Any]], delay_s: float, what: str) -> None:
        self._flush = flush
        self.delay_s = delay_s
        self._what = what
        self._handle: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self) -> None:
        """Flush within `delay_s` (no-op outside an event loop: the owner flushes explicitly)."""
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._handle = loop.call_later(self.delay_s, self._fire)

    def cancel(self) -> None:
        """Called by an explicit flush: what was scheduled is written by it."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        task = asyncio.get_running_loop().create_task(self._run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self) -> None:
        try:
            await self._flush()
        except StoreUnavailable:
            # The store logs its outage once; what was not written is kept, and tried again here
            # until the database answers.
            self.schedule()
        except Exception:
            log.exception("Cannot persist %s; will retry on the next change", self._what)

    async def wait(self) -> None:
        """Wait for flushes already started (shutdown: before closing the store)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
