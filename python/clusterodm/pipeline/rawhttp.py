"""A minimal HTTP/1.1 POST for forwarding uploads, so file parts can go out with `sendfile`.

Uploads are the hot path of the proxy: through a generic client every byte is read from the page
cache into Python and written back to a socket on the event loop's thread, which then competes
with receiving the client's upload. `loop.sendfile` moves file parts kernel-side instead (plain
read/write fallback on TLS). One connection per request (`Connection: close`): requests are big
batches, and a dead connection never lingers in a pool.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode, urlsplit

CONNECT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 600.0
MAX_HEAD_BYTES = 64 << 10
MAX_REPLY_BYTES = 16 << 20


class HTTPFailure(Exception):
    """The exchange failed; `unreachable` when no connection could be made at all."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


SendBody = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def post(
    base_url: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    length: int | None,
    send_body: SendBody | None,
) -> tuple[int, bytes]:
    """POST `length` bytes written by `send_body` to `base_url + path`; (status, reply body).

    `length` None: the body's size is not known yet, `send_body` writes it chunk-encoded.
    """
    url = urlsplit(base_url)
    tls = ssl.create_default_context() if url.scheme == "https" else None
    host = url.hostname or ""
    port = url.port or (443 if tls else 80)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise HTTPFailure(f"cannot connect ({exc.__class__.__name__}: {exc})", unreachable=True) from None
    target = path + ("?" + urlencode(query) if query else "")
    host_header = url.netloc.rpartition("@")[2]
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}", framing]
    lines += ["Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if send_body is not None:
            await send_body(writer)
        await writer.drain()
        return await asyncio.wait_for(_read_reply(reader), REPLY_TIMEOUT_S)
    except TimeoutError:
        raise HTTPFailure(f"no reply within {REPLY_TIMEOUT_S:g} s") from None
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        raise HTTPFailure(f"{exc.__class__.__name__} {exc}".rstrip()) from None
    finally:
        writer.transport.abort()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError("reply headers too large")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP reply: {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        if size > MAX_REPLY_BYTES:
            raise ValueError("reply too large")
        return status, await reader.readexactly(size)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, await _read_chunked(reader)
    return status, await reader.read(MAX_REPLY_BYTES)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return bytes(body)
        if len(body) + size > MAX_REPLY_BYTES:
            raise ValueError("reply too large")
        body += await reader.readexactly(size)
        await reader.readline()
