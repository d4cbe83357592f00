"""Stream-through: a file still arriving from the client is piped on to the node as it is written.

The copy in `tmp/{uuid}/.partial/` stays the source of truth and the only buffer: the sender follows
it with `sendfile` (nothing is held in memory, the receiver is never slowed), in a chunk-encoded
request to the node whose multipart body is closed only once the file is complete under the same
final name here. Anything else (the client's part aborted, a local name collision, a node error)
aborts that request, so the node never completes it. The node keeps what it got of the part all
the same (NodeODM does), so once any of the file went out, the attempt fails and the node is
cleared before it gets the task again (`attempt.py`, `leftovers.py`); a stream that failed before
it sent anything of the part hands the file to the ordinary batches from disk.

Only files that are still arriving once `STREAM_AFTER_BYTES` of them are here go this way (the
decision needs no setting: it follows each file's size as it arrives). Smaller files complete
first and travel to the node in batches of several files per request (`attempt.py`), which costs
the proxy and the node far less per file than one request each.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from clusterodm.pipeline.transfer import SLICE_BYTES, Progress, RateLimiter, quote_name

WAKE_BYTES = 4 << 20
"""The sender wakes once this much more arrived (or the file ended): fewer, bigger sendfile calls."""
STREAM_AFTER_BYTES = WAKE_BYTES
"""A file is streamed on only once this much of it arrived with more to come. A stream would not
send anything of a smaller file before it is complete anyway (the sender waits for `WAKE_BYTES`),
so such files go in batches from disk instead."""


class StreamAborted(Exception):
    """The file will not complete under the streamed name: the node must not get it this way."""


class FileStream:
    """One file being received, followed by its sender; `poke`/`complete`/`discard` come from the receiver."""

    def __init__(self, partial: Path, name: str) -> None:
        self.name = name
        """The sanitized name sent to the node; the file must end up under it here too."""
        self.final: str | None = None
        self.dead = False
        """The stream gave up (or was refused): the file goes from disk once complete."""
        self._source: BinaryIO = partial.open("rb")  # open now: the partial name goes away at completion
        self._grown = asyncio.Event()
        self._ended = False
        self._unseen = 0
        self._missing = WAKE_BYTES
        """What the waiting sender still misses of its next `WAKE_BYTES` (counted from its last look)."""

    def poke(self, size: int) -> None:
        """About `size` more bytes were written."""
        self._unseen += size
        if self._unseen >= self._missing:
            self._grown.set()

    def complete(self, final: str) -> None:
        self.final = final
        self._ended = True
        self._grown.set()

    def discard(self) -> None:
        self._ended = True
        self._grown.set()

    def claims(self, name: str) -> bool:
        """This stream will deliver `name` (or hand it back if it fails)."""
        return not self.dead and self.final == name == self.name

    def close(self) -> None:
        self._source.close()

    async def next_range(self, offset: int) -> int:
        """Bytes available from `offset` (0: the file is complete); waits for the receiver."""
        while True:
            self._unseen = 0
            size = os.fstat(self._source.fileno()).st_size
            if offset + (0 if self._ended else WAKE_BYTES) <= size and offset < size:
                return size - offset
            if self._ended:
                if self.final is None:
                    raise StreamAborted(f"the client's upload of {self.name} ended before the file did")
                if self.final != self.name:
                    raise StreamAborted(f"{self.name} was stored as {self.final}")
                return 0
            self._missing = offset + WAKE_BYTES - size
            self._grown.clear()
            await self._grown.wait()

    @property
    def source(self) -> BinaryIO:
        return self._source


class StreamBody:
    """A chunk-encoded one-file multipart body read from a growing file (`post_json` body)."""

    content_type: str
    length = None

    def __init__(
        self, stream: FileStream, limiter: RateLimiter, progress: Progress, busy: Callable[[int], None]
    ) -> None:
        self._stream = stream
        self._limiter = limiter
        self._progress = progress
        self._busy = busy
        boundary = "----clusterodm" + secrets.token_hex(12)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="{quote_name(stream.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self.sent = 0
        self.started = False
        """The part's head went out: the node has a file of this name, however short."""
        self.awaiting_reply = False
        """The body is out and counted busy (`busy(1)`) until the caller has the node's reply."""
        rate = limiter.rate
        self._slice = SLICE_BYTES if rate <= 0 else max(16 << 10, min(SLICE_BYTES, rate // 8))

    def _chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        offset = 0
        # The first bytes (or the end) come before the part's head: a file the client drops early
        # never reaches the node at all.
        available = await self._stream.next_range(offset)
        self.started = True
        self._chunk(writer, self._head)
        while available:
            count = min(self._slice, available)
            self._busy(1)  # only time spent sending counts for the stall watchdog
            try:
                await self._limiter.take(count)
                writer.write(b"%x\r\n" % count)
                await writer.drain()
                sent = await loop.sendfile(writer.transport, self._stream.source, offset, count)
                if sent != count:
                    raise ConnectionResetError("the node stopped reading")
                writer.write(b"\r\n")
            finally:
                self._busy(-1)
            offset += count
            self.sent += count
            self._progress.bytes_sent += count
            available = await self._stream.next_range(offset)
        self._chunk(writer, self._tail)
        writer.write(b"0\r\n\r\n")
        self._busy(1)  # a node that takes the bytes but never answers is stalled too
        self.awaiting_reply = True


class RequestFeed:
    """The streams of one client upload request (one file part at a time).

    A part becomes a stream only once `STREAM_AFTER_BYTES` of it arrived (counted from the request's
    chunks, confirmed with one `stat`); smaller parts never cost a stream.
    """

    def __init__(
        self, start: Callable[[Path, str], FileStream | None], received: Callable[[int], None]
    ) -> None:
        self._start = start
        self._received = received
        """Told the size of every chunk of the request (the upload throughput counter)."""
        self._current: FileStream | None = None
        self._candidate: tuple[Path, str] | None = None
        """The part being written while it is not (yet) streamed."""
        self._seen = 0
        """Request bytes since the candidate started (an upper bound of its size)."""

    def started(self, partial: Path, name: str) -> None:
        self.close()
        self._candidate = (partial, name)
        self._seen = 0

    def completed(self, final: str) -> None:
        self._candidate = None
        if self._current is not None:
            self._current.complete(final)
            self._current = None

    def close(self) -> None:
        """The request ended: a file still open here will not complete."""
        self._candidate = None
        if self._current is not None:
            self._current.discard()
            self._current = None

    def _grown(self, size: int) -> None:
        if self._current is not None:
            self._current.poke(size)
            return
        if self._candidate is None:
            return
        self._seen += size
        if self._seen < STREAM_AFTER_BYTES:
            return
        partial, name = self._candidate
        try:
            self._seen = os.stat(partial).st_size
        except OSError:
            self._candidate = None
            return
        if self._seen >= STREAM_AFTER_BYTES:
            self._candidate = None  # one try per part: refused now, it goes in a batch once complete
            self._current = self._start(partial, name)

    async def follow(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the request's chunks through; once each one is written, wake the current stream (or
        start one for a part that grew big enough)."""
        async for chunk in chunks:
            self._received(len(chunk))
            yield chunk
            self._grown(len(chunk))
