"""The wire level of a forward: multipart bodies streamed from disk, JSON replies, rate and progress.

Bodies are produced chunk by chunk from the files in `tmp/{uuid}/` (never a whole file in memory),
through a rate limiter shared by every forward (`--upload-max-speed`), and counted for progress
lines and the low-speed stall watchdog (`StallPolicy`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from clusterodm.cluster.node import Node
from clusterodm.pipeline import rawhttp

log = logging.getLogger("clusterodm.pipeline")

SLICE_BYTES = 8 << 20
"""Largest sendfile call: bounds how late progress, the stall watchdog and the rate cap see bytes."""


@dataclass(frozen=True)
class StallPolicy:
    """The low-speed abort of libcurl in the original: under `min_bytes_s` for `window_s` while sending."""

    min_bytes_s: float = 30.0
    window_s: float = 1600.0


class ForwardError(Exception):
    """This attempt to hand the task to a node failed (the message says why, for logs and output)."""

    def __init__(self, message: str, unreachable: bool = False, answered: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        """The node refused the connection: retrying the batch there is pointless, try another node."""
        self.answered = answered
        """The node answered (an HTTP error status or a JSON error): it said what it did with the body."""

    @property
    def may_have_stored(self) -> bool:
        """The request broke after it reached the node: an upload may have left files there (a
        NodeODM node keeps the parts of a request that ended early, the last one cut off)."""
        return not self.unreachable and not self.answered


class RateLimiter:
    """A total bytes/s cap shared by all forwards; 0 = no cap. Allows a half-second burst.

    Every upload byte sent to a node passes here, so it also counts them (`total`: the
    `clusterodm_upload_forwarded_bytes_total` metric)."""

    def __init__(self, bytes_per_s: int) -> None:
        self.rate = bytes_per_s
        self.total = 0
        self._next = 0.0

    async def take(self, size: int) -> None:
        self.total += size
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(self._next, now - 0.5)
        self._next = start + size / self.rate
        if start > now:
            await asyncio.sleep(start - now)


@dataclass
class Progress:
    """What a forward attempt has moved so far (bytes count retries too, for the stall watchdog)."""

    files_total: int
    bytes_total: int
    files_done: int = 0
    bytes_done: int = 0
    bytes_sent: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, node: Node) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-3)
        return (
            f"Uploading to node {node.name}: {self.files_done}/{self.files_total} files, "
            f"{_size(self.bytes_done)}/{_size(self.bytes_total)}, {_size(self.bytes_sent / elapsed)}/s"
        )


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def quote_name(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body of text fields and files on disk, with its exact length."""

    def __init__(
        self,
        fields: list[tuple[str, str]],
        files: list[Path],
        limiter: RateLimiter,
        progress: Progress,
    ) -> None:
        self.boundary = "----clusterodm" + secrets.token_hex(12)
        self._limiter = limiter
        self._progress = progress
        self._parts: list[tuple[bytes, Path | bytes]] = []
        for name, value in fields:
            head = f'--{self.boundary}\r\nContent-Disposition: form-data; name="{quote_name(name)}"\r\n\r\n'
            self._parts.append((head.encode(), value.encode()))
        for path in files:
            head = (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="images"; '
                f'filename="{quote_name(path.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            self._parts.append((head.encode(), path))
        self._tail = f"--{self.boundary}--\r\n".encode()
        self.length = len(self._tail) + sum(
            len(head) + (body.stat().st_size if isinstance(body, Path) else len(body)) + 2
            for head, body in self._parts
        )
        self.sent = 0
        rate = limiter.rate
        self._slice = SLICE_BYTES if rate <= 0 else max(16 << 10, min(SLICE_BYTES, rate // 8))

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        await self._limiter.take(len(data))
        writer.write(data)
        self._count(len(data))

    def _count(self, size: int) -> None:
        self.sent += size
        self._progress.bytes_sent += size

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        """Send the body; file parts go kernel-side (`sendfile`) in rate-limited, counted slices."""
        loop = asyncio.get_running_loop()
        for head, body in self._parts:
            await self._write(writer, head)
            if isinstance(body, bytes):
                await self._write(writer, body + b"\r\n")
                continue
            with body.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                offset = 0
                while offset < size:
                    count = min(self._slice, size - offset)
                    await self._limiter.take(count)
                    await writer.drain()
                    sent = await loop.sendfile(writer.transport, source, offset, count)
                    if sent <= 0:
                        raise ConnectionResetError("the node stopped reading")
                    offset += sent
                    self._count(sent)
            await self._write(writer, b"\r\n")
        await self._write(writer, self._tail)


class UrlEncoded:
    """A small `application/x-www-form-urlencoded` body (NodeODM's cancel/remove refuse multipart)."""

    content_type = "application/x-www-form-urlencoded"

    def __init__(self, values: dict[str, str]) -> None:
        self._data = urlencode(values).encode()
        self.length = len(self._data)

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._data)


def _params(node: Node) -> dict[str, str]:
    return {"token": node.token} if node.token else {}


class Body(Protocol):
    """What `post_json` sends: a content type, a length (None: chunked) and a writer."""

    @property
    def content_type(self) -> str: ...

    @property
    def length(self) -> int | None: ...

    async def write_to(self, writer: asyncio.StreamWriter) -> None: ...


async def post_json(node: Node, path: str, body: Body | None, headers: dict[str, str]) -> dict[str, Any]:
    """POST and return the JSON object; ForwardError on transport errors, non-200 or `{"error"}`."""
    what = f"{node.name} {path.split('/')[3] if path.count('/') >= 3 else path}"
    length: int | None = 0
    if body is not None:
        headers = {**headers, "Content-Type": body.content_type}
        length = body.length
    try:
        status, content = await rawhttp.post(
            node.base_url, path, _params(node), headers, length, body.write_to if body else None
        )
    except rawhttp.HTTPFailure as exc:
        raise ForwardError(f"{what}: {exc}", unreachable=exc.unreachable) from None
    if status != 200:
        raise ForwardError(f"{what}: HTTP {status}", answered=True)
    try:
        reply = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ForwardError(f"{what}: invalid JSON reply", answered=True) from None
    if not isinstance(reply, dict):
        raise ForwardError(f"{what}: unexpected reply {reply!r:.200}", answered=True)
    if "error" in reply:
        raise ForwardError(f"{what}: {reply['error']}", answered=True)
    return reply
