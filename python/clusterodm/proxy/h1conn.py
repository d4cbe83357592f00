"""One HTTP/1.1 client connection to a node, as a bare `asyncio.Protocol`.

The proxy's hot path is a tiny GET answered by a tiny JSON document, so this keeps per-request
work to a few bytes operations: the request head is written in one `transport.write`, and the
protocol wakes the reader only when bytes arrive (a whole small response usually arrives in one
segment: one wakeup per request). Large bodies are streamed: reading pauses once `HIGH_WATER`
bytes wait unread, so a slow client slows the node instead of growing our memory.

Every wait for the node has a limit (`deadline`), so a node that accepts and never answers, or
stops in the middle of a body, cannot hold a request forever. The limit costs no timer per
request: a connection has at most one `call_at` handle, armed by a wait that finds none (or one
due later than its deadline); when it fires before a wait's (since moved) deadline, it re-arms
itself for that deadline, and when no wait is pending it just lapses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clusterodm.proxy.upstream import UpstreamError, UpstreamGone, UpstreamTimeout

HIGH_WATER = 1024 * 1024
"""Unread bytes at which reading from the node pauses (resumes once the consumer drains them)."""
MAX_HEAD = 64 * 1024
"""Largest response head accepted (status line plus headers)."""


class H1Connection(asyncio.Protocol):
    """Buffered reader and writer with flow control both ways; framing lives in `upstream_h1`."""

    def __init__(self, on_lost: Callable[[H1Connection], None]) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_deadline = 0.0
        """Monotonic time after which an idle pooled connection is not reused."""
        self.reused = False
        """Served a response before (a failure before any byte may be a stale keep-alive)."""
        self.deadline = 0.0
        """Loop time by which the bytes waited for must arrive (`fill`) or be sent (`drain`)."""
        self.idle_s = 0.0
        """When positive, each wait gets this long from its start instead of the fixed `deadline`."""
        self.answer_s = 0.0
        """The span the fixed `deadline` was set to (for the error message)."""
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timed_out = False
        self._on_lost = on_lost
        self._error: BaseException | None = None
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed = True
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._on_lost(self)

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # -- used by the request/response code -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise UpstreamGone("connection closed by the node")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the kernel's send buffer is full (request bodies flow at the node's pace)."""
        if self._drain is not None:
            try:
                await self._wait(self._drain)
            except UpstreamTimeout:
                raise UpstreamTimeout(f"the node accepted no request data for {self.idle_s:g} s") from None
        if self.closed:
            raise self._gone()

    async def fill(self) -> None:
        """Wait for more bytes; raises `UpstreamGone` when the node closed or reset instead, and
        `UpstreamTimeout` when nothing came by the deadline."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        if self._eof:
            raise self._gone()
        waiter = self._waiter = self._loop.create_future()
        try:
            await self._wait(waiter)
        finally:
            self._waiter = None
        if not self.buffer and self._eof:
            raise self._gone()

    async def _wait(self, future: asyncio.Future[None]) -> None:
        if self.idle_s:
            self.deadline = self._loop.time() + self.idle_s
        if self._timer is None or self._timer_at > self.deadline:
            self._arm()
        await future
        if self._timed_out:
            self._timed_out = False
            if self.idle_s:
                raise UpstreamTimeout(f"the node sent nothing for {self.idle_s:g} s")
            raise UpstreamTimeout(f"the node did not answer within {self.answer_s:g} s")

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self.deadline
        self._timer = self._loop.call_at(self.deadline, self._on_timer)

    def _on_timer(self) -> None:
        """The deadline a wait was armed with passed: end the wait, unless it moved later."""
        self._timer = None
        pending = [f for f in (self._waiter, self._drain) if f is not None and not f.done()]
        if not pending:
            return  # idle between requests: the next wait arms the timer again
        if self._loop.time() < self.deadline:
            self._arm()
            return
        self._timed_out = True
        for future in pending:
            future.set_result(None)

    def take(self, size: int) -> bytes:
        """Up to `size` buffered bytes, removed from the buffer."""
        buffer = self.buffer
        if len(buffer) <= size:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        if self._reading_paused and len(buffer) < HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def at_eof(self) -> bool:
        return self._eof

    @property
    def clean_eof(self) -> bool:
        """The node closed its side normally (the end of a body framed by connection close)."""
        return self._eof and self._error is None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self._on_lost(self)

    def abort(self) -> None:
        """Close without flushing (a half-read body: the node must stop sending at once)."""
        if self.transport is not None:
            self.transport.abort()
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _gone(self) -> Exception:
        error = self._error
        if error is None:
            return UpstreamGone("the node closed the connection")
        if isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return UpstreamGone(str(error) or error.__class__.__name__)
        return UpstreamError(str(error) or error.__class__.__name__)
