"""`Upstream` on a small built-in HTTP/1.1 keep-alive client: what clusterodm forwards with.

Why not a general-purpose client: on the proxy's hot path (a routed `GET /task/{uuid}/info`) the
general clients spent most of their time building request and response objects. This one writes
a pre-joined request head, parses the answer's head with `bytes.find`/`split`, and hands the
body on as bytes: Content-Length, chunked and read-until-close bodies all stream, nothing large
is buffered. Connections are pooled per node (most recently used first) and dropped after
`IDLE_S` or the node's own `Keep-Alive: timeout`, whichever is shorter. An idempotent request
without a body (GET, HEAD...) that fails on a reused connection before any byte came back is
retried once on a new connection (the node closed an idle keep-alive connection as we sent on
it); a POST never is, since the node may have acted on it. Every wait has a time limit
(`Timeouts`): a node that never answers gets the client an error naming it, not a hang.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from urllib.parse import urlsplit

from clusterodm.proxy.h1conn import MAX_HEAD, H1Connection
from clusterodm.proxy.upstream import (
    HOP_BY_HOP,
    Headers,
    Timeouts,
    UpstreamError,
    UpstreamGone,
    UpstreamTimeout,
)

IDLE_S = 30.0
"""Longest a connection waits in the pool for its next request."""
MAX_IDLE_PER_NODE = 256
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose requests carry a body: one without is sent as `Content-Length: 0`."""
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Idempotent methods (RFC 9110 9.2.2): safe to send again when a stale connection failed."""
_NO_BODY_STATUS = frozenset({204, 304})
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class _Pool:
    """Idle connections to one node, plus what every request to it needs pre-encoded."""

    def __init__(self, origin: str) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"unsupported node URL {origin!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        netloc = parts.netloc.rpartition("@")[2]
        self.host_line = b"host: " + netloc.encode("idna") + b"\r\n"
        self.idle: list[H1Connection] = []
        self.closed = False
        """The client was closed: connections coming back are closed instead of kept."""

    def acquire(self) -> H1Connection | None:
        now = time.monotonic()
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed or conn.at_eof or conn.buffer or now > conn.idle_deadline:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    def release(self, conn: H1Connection, keep_s: float) -> None:
        if self.closed:
            conn.close()
            return
        conn.idle_deadline = time.monotonic() + keep_s
        self.idle.append(conn)
        if len(self.idle) > MAX_IDLE_PER_NODE:
            self.idle.pop(0).close()

    def discard(self, conn: H1Connection) -> None:
        """Called when a connection closes: an idle one must leave the pool."""
        try:
            self.idle.remove(conn)
        except ValueError:
            pass


class H1Response:
    """A response whose head arrived; the body is read from the connection on demand."""

    def __init__(
        self,
        pool: _Pool,
        conn: H1Connection,
        status: int,
        headers: Headers,
        content_length: int | None,
        framing: int,
        keep_s: float | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content_length = content_length
        self._pool = pool
        self._conn = conn
        self._framing = framing
        """Bytes left of a Content-Length body, -1 chunked, -2 until the node closes."""
        self._keep_s = keep_s
        """How long the connection may idle in the pool, None if it can't be reused."""
        self._done = framing == 0
        self._released = False

    async def read(self) -> bytes:
        conn = self._conn
        size = self._framing
        if size > 0 and not self._done:
            while len(conn.buffer) < size:
                await conn.fill()
            self._done = True
            return conn.take(size)
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        conn = self._conn
        if self._framing == -1:
            async for chunk in _chunked(conn):
                yield chunk
        elif self._framing == -2:
            while True:
                if conn.buffer:
                    yield conn.take(len(conn.buffer))
                elif conn.clean_eof:
                    break
                else:
                    try:
                        await conn.fill()
                    except UpstreamGone:
                        if not conn.clean_eof:
                            raise
        else:
            remaining = self._framing
            while remaining > 0:
                if not conn.buffer:
                    await conn.fill()
                chunk = conn.take(remaining)
                remaining -= len(chunk)
                self._framing = remaining
                yield chunk
        self._done = True

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        conn = self._conn
        if not self._done:
            conn.abort()  # a half-read body: the node must stop sending now
        elif self._keep_s is not None and not conn.buffer and not conn.closed:
            self._pool.release(conn, self._keep_s)
        else:
            conn.close()  # complete, but not reusable (or the node sent more than it declared)


async def _chunked(conn: H1Connection) -> AsyncIterator[bytes]:
    """Decode a chunked body, yielding the data as it arrives (trailers are dropped)."""
    buffer = conn.buffer
    while True:
        line = await _line(conn)
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or not _HEX_DIGITS.issuperset(digits):
            raise UpstreamError(f"invalid chunk size {line[:40]!r} from the node")
        size = int(digits, 16)
        if size == 0:
            while await _line(conn):
                pass
            return
        while size > 0:
            if not buffer:
                await conn.fill()
            chunk = conn.take(size)
            size -= len(chunk)
            yield chunk
        if await _line(conn):
            raise UpstreamError("chunk not followed by CRLF in the node's response")


async def _line(conn: H1Connection) -> bytes:
    buffer = conn.buffer
    while (end := buffer.find(b"\r\n")) < 0:
        if len(buffer) > 8192:
            raise UpstreamError("overlong line in the node's chunked response")
        await conn.fill()
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


async def _read_head(pool: _Pool, conn: H1Connection, method: str) -> H1Response:
    buffer = conn.buffer
    while True:
        start = 0
        while (end := buffer.find(b"\r\n\r\n", start)) < 0:
            if len(buffer) > MAX_HEAD:
                raise UpstreamError("response head from the node is too large")
            start = max(0, len(buffer) - 3)
            await conn.fill()
        if end > MAX_HEAD:  # it may arrive whole, in one read
            raise UpstreamError("response head from the node is too large")
        lines = bytes(buffer[:end]).split(b"\r\n")
        del buffer[: end + 4]
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12 or not status_line[9:12].isdigit():
            raise UpstreamError(f"invalid status line {status_line[:40]!r} from the node")
        status = int(status_line[9:12])
        if 100 <= status < 200 and status != 101:
            continue  # interim response (100 Continue): the real one follows
        return _response(pool, conn, method, status, status_line[7:8] == b"1", lines)


def _response(
    pool: _Pool, conn: H1Connection, method: str, status: int, http11: bool, lines: list[bytes]
) -> H1Response:
    headers: Headers = []
    length: int | None = None
    chunked = until_close = False
    keep_alive = http11
    keep_s = IDLE_S
    named: set[bytes] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError(f"invalid header line {line[:40]!r} from the node")
        name = name.strip().lower()
        value = value.strip()
        if name not in HOP_BY_HOP:
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise UpstreamError(f"invalid Content-Length {value[:20]!r} from the node")
                length = int(value)
            headers.append((name, value))
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            keep_alive = b"close" not in tokens and (http11 or b"keep-alive" in tokens)
            named |= tokens
        elif name == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            until_close = not chunked
        elif name == b"keep-alive":
            for param in value.split(b","):
                key, _, seconds = param.partition(b"=")
                if key.strip().lower() == b"timeout" and seconds.strip().isdigit():
                    # Leave a second of margin so we never send on a connection the node is closing.
                    keep_s = min(keep_s, int(seconds.strip()) - 1.0)
    if named:
        headers = [(n, v) for n, v in headers if n not in named]
    if chunked or until_close:  # Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
        headers = [(n, v) for n, v in headers if n != b"content-length"]
        length = None
    if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
        framing = 0
    elif chunked:
        framing = -1
    elif length is not None and not until_close:
        framing = length
    else:
        framing = -2
        keep_alive = False
    reuse = keep_alive and keep_s > 0
    return H1Response(pool, conn, status, headers, length, framing, keep_s if reuse else None)


class H1Upstream:
    """Pooled HTTP/1.1 client to the nodes (one pool per node origin)."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self._pools: dict[str, _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self.timeouts = timeouts or Timeouts()

    async def request(
        self,
        method: str,
        origin: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        small: bool = False,
    ) -> H1Response:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(origin)
        head, chunked = _request_head(method, pool, target, headers, body is not None)
        retry = body is None and method in _RETRYABLE_METHODS
        timeouts = self.timeouts
        deadline = asyncio.get_running_loop().time() + timeouts.answer_s
        while True:
            conn = pool.acquire() or await self._connect(pool, deadline)
            conn.answer_s = timeouts.answer_s
            try:
                conn.write(head)
                if body is not None:
                    conn.idle_s = timeouts.idle_s  # the node takes the body at its pace, but takes it
                    await _send_body(conn, body, chunked)
                    deadline = asyncio.get_running_loop().time() + timeouts.answer_s
                conn.idle_s = 0.0
                conn.deadline = deadline
                response = await _read_head(pool, conn, method)
            except UpstreamGone:
                conn.abort()
                if retry and conn.reused and not conn.buffer:
                    retry = False  # a stale keep-alive connection: once more on a fresh one
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            if not small:
                conn.idle_s = timeouts.idle_s  # a streamed body: a limit on each pause, not in all
            return response

    async def _connect(self, pool: _Pool, deadline: float) -> H1Connection:
        loop = asyncio.get_running_loop()
        context = None
        if pool.tls:
            context = self._ssl = self._ssl or ssl.create_default_context()
        limit = min(self.timeouts.connect_s, deadline - loop.time())
        try:
            async with asyncio.timeout(limit):
                addresses = await _addresses(loop, pool.host, pool.port)
                error: OSError | None = None
                for family, address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: H1Connection(pool.discard),
                            sock=None,
                            host=address[0],
                            port=address[1],
                            family=family,
                            ssl=context,
                            server_hostname=pool.host if context else None,
                        )
                        return conn
                    except OSError as exc:
                        error = error or exc
                assert error is not None
                raise error
        except TimeoutError:
            raise UpstreamTimeout(f"no connection to {pool.host}:{pool.port} within {limit:g} s") from None
        except (ConnectionRefusedError, ConnectionResetError) as exc:
            raise UpstreamGone(str(exc) or exc.__class__.__name__) from exc
        except OSError as exc:
            raise UpstreamError(str(exc) or exc.__class__.__name__) from exc

    async def close(self) -> None:
        """Close the pooled connections (at shutdown; requests still running close their own)."""
        for pool in self._pools.values():
            pool.closed = True
            while pool.idle:
                pool.idle.pop().close()
        self._pools.clear()


async def _addresses(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[tuple[int, tuple]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(family, address) for family, _, _, _, address in infos]
    return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]


def _request_head(
    method: str, pool: _Pool, target: str, headers: Sequence[tuple[bytes, bytes]], has_body: bool
) -> tuple[bytes, bool]:
    """The request head, and whether the body must be sent chunked (the client's length unknown)."""
    parts = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), pool.host_line]
    has_length = False
    for name, value in headers:
        if name == b"content-length":
            has_length = True
        elif name == b"expect":
            continue  # we send the body at once instead of waiting for 100 Continue
        parts += (name, b": ", value, b"\r\n")
    chunked = has_body and not has_length
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif not has_length and method in _BODY_METHODS:
        parts.append(b"content-length: 0\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked


async def _send_body(conn: H1Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
    async for chunk in body:
        if chunked:
            conn.write(b"%x\r\n" % len(chunk))
            conn.write(chunk)
            conn.write(b"\r\n")
        else:
            conn.write(chunk)
        await conn.drain()
    if chunked:
        conn.write(b"0\r\n\r\n")
