"""Conformance of the built-in forwarding client (`upstream_h1`) against raw-socket servers.

Each test runs an asyncio server on a loopback port that writes exactly the bytes a node (or a
broken node) would: chunked bodies with odd sizes and trailers, bodies framed by the close,
interim responses, bodyless answers, stale keep-alive connections, bodies longer or shorter than
declared, heads arriving byte by byte, resets, and silence; and it checks the requests it gets.
The client must decode what is valid, fail cleanly on what is not, never hang (every wait has a
limit: `Timeouts`), and never send a request twice unless it is idempotent and the first attempt
provably went nowhere.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clusterodm.config import Config
from clusterodm.proxy.upstream import Timeouts, UpstreamError, UpstreamGone, UpstreamTimeout
from clusterodm.proxy.upstream_h1 import H1Response, H1Upstream
from clusterodm.services import Cluster
from support.procs import free_port

from .rawnode import read_body

SHORT = Timeouts(connect_s=2.0, answer_s=0.4, idle_s=0.4)
"""Limits short enough for tests to wait them out."""
BOUND_S = 10.0
"""No test may take longer than this (a hang fails fast instead of at pytest's timeout)."""


@dataclass
class Request:
    conn: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    """One accepted connection, as the scripted node sees it."""

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    node: RawNode

    async def request(self) -> Request | None:
        """The next request on this connection, or None when the client closed it."""
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = raw.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        request = Request(self.id, method, target, headers, await read_body(self.reader, headers))
        self.node.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, pause_s: float = 0.002) -> None:
        """Byte by byte, each in its own TCP segment (Nagle is off on asyncio sockets)."""
        for i in range(len(data)):
            await self.send(data[i : i + 1])
            await asyncio.sleep(pause_s)

    def reset(self) -> None:
        """Abort with a TCP reset (SO_LINGER 0) instead of an orderly close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_closed(self) -> None:
        """Hold the connection, reading nothing into meaning, until the client closes it."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        await self.gone()

    async def gone(self) -> None:
        """Record that the client closed this connection."""
        async with self.node.changed:
            self.node.closed_by_client.append(self.id)
            self.node.changed.notify_all()


Script = Callable[[Conn], Coroutine[Any, Any, None]]


@dataclass
class RawNode:
    script: Script
    origin: str = ""
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    closed_by_client: list[int] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def closed(self, *ids: int) -> None:
        """Wait until the client closed exactly these connections (in this order)."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.closed_by_client == list(ids))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(Conn(self.connections, reader, writer, self))
        finally:
            writer.close()


@asynccontextmanager
async def raw_node(script: Script) -> AsyncIterator[RawNode]:
    node = RawNode(script)
    server = await asyncio.start_server(node._serve, "127.0.0.1", 0)
    node.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield node
    finally:
        server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(BOUND_S):
            await test()

    asyncio.run(bounded())


def head(status: str, *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode()


def ok(body: bytes) -> bytes:
    return head("200 OK", f"content-length: {len(body)}") + body


async def get(
    client: H1Upstream, origin: str, target: str = "/", method: str = "GET", small: bool = False
) -> tuple[H1Response, bytes]:
    """Send a bodyless request and read the whole body, by `read()` when `small`, else chunk by chunk."""
    response = await client.request(method, origin, target, [(b"accept", b"*/*")], None, small=small)
    try:
        if small:
            return response, await response.read()
        return response, b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()


async def serve_forever(conn: Conn, answer: Callable[[Request], bytes]) -> None:
    while (request := await conn.request()) is not None:
        await conn.send(answer(request))


# -- requests --------------------------------------------------------------------------------------


def test_request_heads_and_bodies_with_length_chunked_and_empty() -> None:
    """Host is the node's; hop-by-hop answers are dropped; a body of unknown length goes chunked;
    `Expect: 100-continue` is not passed on (the body follows at once); an empty POST says so."""

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"a=1", b"&b=", b"2" * 100_000):
            yield part

    async def script(conn: Conn) -> None:
        await serve_forever(
            conn,
            lambda r: (
                head("200 OK", "Content-Length: 2", "Keep-Alive: timeout=30", "X-Hop: 1", "Connection: X-Hop")
                + b"ok"
            ),
        )

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            headers = [(b"content-type", b"text/plain"), (b"expect", b"100-continue")]
            response = await client.request("POST", node.origin, "/echo?x=%20y", headers, parts())
            assert await response.read() == b"ok"
            assert dict(response.headers) == {b"content-length": b"2"}  # keep-alive, x-hop dropped
            await response.aclose()
            sized = [(b"content-length", str(6 + 100_000).encode())]
            response = await client.request("POST", node.origin, "/sized", sized, parts())
            await response.read()
            await response.aclose()
            response = await client.request("POST", node.origin, "/empty", [], None)
            await response.read()
            await response.aclose()
            chunked, sized_request, empty = node.requests
            assert (chunked.method, chunked.target) == ("POST", "/echo?x=%20y")
            assert chunked.headers["host"] == node.origin.removeprefix("http://")
            assert chunked.headers["transfer-encoding"] == "chunked" and "expect" not in chunked.headers
            assert chunked.body == sized_request.body == b"a=1&b=" + b"2" * 100_000
            assert "transfer-encoding" not in sized_request.headers
            assert empty.headers["content-length"] == "0" and empty.body == b""
            assert node.connections == 1
            await client.close()

    run(test)


def test_refused_connection_is_gone() -> None:
    async def test() -> None:
        client = H1Upstream(SHORT)
        with pytest.raises(UpstreamGone):
            await client.request("GET", f"http://127.0.0.1:{free_port()}", "/info", [], None)

    run(test)


# -- framing ---------------------------------------------------------------------------------------


CHUNKED_BODY = b"a" + b"B" * 26 + b"c" * 255 + b"d" * 4096
CHUNKED_WIRE = (
    b"1\r\na\r\n"  # a 1-byte chunk
    b"1A\r\n" + b"B" * 26 + b"\r\n"  # upper-case hex
    b"fF;name=value;x\r\n" + b"c" * 255 + b"\r\n"  # mixed case, chunk extensions
    b"1000 \r\n" + b"d" * 4096 + b"\r\n"  # trailing whitespace before CRLF
    b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"  # trailers
)


@pytest.mark.parametrize("small", [False, True])
def test_chunked_odd_sizes_upper_case_hex_extensions_and_trailers(small: bool) -> None:
    async def script(conn: Conn) -> None:
        while (request := await conn.request()) is not None:
            if request.target == "/chunked":
                await conn.send(head("200 OK", "Transfer-Encoding: chunked"))
                # Split at awkward places: inside size lines, between CR and LF, inside trailers.
                points = [0, 1, 3, 4, 7, 40, 41, 300, 301, len(CHUNKED_WIRE) - 5, len(CHUNKED_WIRE)]
                for start, end in zip(points, points[1:], strict=False):
                    await conn.send(CHUNKED_WIRE[start:end])
                    await asyncio.sleep(0.002)
            else:
                await conn.send(ok(b"next"))

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            response, body = await get(client, node.origin, "/chunked", small=small)
            assert body == CHUNKED_BODY
            assert response.content_length is None
            names = dict(response.headers)
            assert b"transfer-encoding" not in names and b"x-checksum" not in names
            _, body = await get(client, node.origin, "/next")
            assert body == b"next"
            assert node.connections == 1  # the trailers were consumed: the connection was reusable
            await client.close()

    run(test)


def test_chunked_head_and_body_byte_by_byte() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.trickle(head("200 OK", "Transfer-Encoding: chunked", "X-Slow: yes") + CHUNKED_WIRE[:60])
        await conn.send(CHUNKED_WIRE[60:])

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(Timeouts(answer_s=5.0, idle_s=5.0))
            response, body = await get(client, node.origin)
            assert (response.status, dict(response.headers)[b"x-slow"], body) == (200, b"yes", CHUNKED_BODY)
            await client.close()

    run(test)


@pytest.mark.parametrize("size", [b"-1", b"0x10", b"1_0", b"", b"g", b"1 0", b"1" * 17])
def test_invalid_chunk_size_is_an_error(size: bytes) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        chunk = size + b"\r\nxxxxxxxxxxxxxxxx\r\n0\r\n\r\n"
        await conn.send(head("200 OK", "Transfer-Encoding: chunked") + chunk)
        await conn.until_closed()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            with pytest.raises(UpstreamError, match="invalid chunk size"):
                await get(client, node.origin)
            await client.close()

    run(test)


@pytest.mark.parametrize("status_line", ["HTTP/1.1 200 OK", "HTTP/1.0 200 OK"])
def test_body_framed_by_the_close(status_line: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        extra = "Connection: close\r\n" if status_line.startswith("HTTP/1.1") else ""
        await conn.send(f"{status_line}\r\n{extra}Content-Type: text/plain\r\n\r\n".encode())
        for part in (b"the ", b"end ", b"is ", b"EOF"):
            await conn.send(part)
            await asyncio.sleep(0.005)
        conn.writer.close()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            for small in (False, True):
                response, body = await get(client, node.origin, small=small)
                assert (response.status, body, response.content_length) == (200, b"the end is EOF", None)
            assert node.connections == 2  # never reused
            await client.close()

    run(test)


def test_interim_responses_before_the_real_one() -> None:
    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            await conn.send(head("201 Created", "Content-Length: 4", "X-Final: 1") + b"done")

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            for _ in range(2):
                response, body = await get(client, node.origin)
                assert (response.status, body, dict(response.headers)) == (
                    201,
                    b"done",
                    {b"content-length": b"4", b"x-final": b"1"},
                )
            assert node.connections == 1
            await client.close()

    run(test)


def test_head_204_and_304_have_no_body_and_keep_the_connection() -> None:
    answers = {
        "/head": head("200 OK", "Content-Length: 1000", "Content-Type: application/zip"),
        "/head-chunked": head("200 OK", "Transfer-Encoding: chunked"),
        "/204": head("204 No Content"),
        "/304": head("304 Not Modified", "Content-Length: 50", 'ETag: W/"1"'),
        "/after": ok(b"after"),
    }

    async def test() -> None:
        async with raw_node(lambda conn: serve_forever(conn, lambda r: answers[r.target])) as node:
            client = H1Upstream(SHORT)
            response, body = await get(client, node.origin, "/head", method="HEAD")
            assert (response.status, body, response.content_length) == (200, b"", 1000)
            assert dict(response.headers)[b"content-length"] == b"1000"  # passed on for HEAD
            response, body = await get(client, node.origin, "/head-chunked", method="HEAD")
            assert (response.status, body) == (200, b"")
            for target, status in (("/204", 204), ("/304", 304)):
                for small in (False, True):
                    response, body = await get(client, node.origin, target, small=small)
                    assert (response.status, body) == (status, b"")
            assert dict(response.headers)[b"etag"] == b'W/"1"'
            _, body = await get(client, node.origin, "/after")
            assert body == b"after"
            assert node.connections == 1
            await client.close()

    run(test)


MALFORMED = {
    "not HTTP": b"HELLO THERE\r\n\r\n",
    "no status code": b"HTTP/1.1 OK\r\n\r\n",
    "bad Content-Length": head("200 OK", "Content-Length: 12abc") + b"x" * 12,
    "conflicting lengths": head("200 OK", "Content-Length: 3", "Content-Length: 4") + b"xxxx",
    "header without colon": head("200 OK", "Content-Length: 1", "garbage") + b"x",
    "head too large": b"HTTP/1.1 200 OK\r\n" + b"x-big: " + b"b" * 70_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_answer_is_an_error_not_a_hang(name: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(MALFORMED[name])
        await conn.until_closed()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(Timeouts(answer_s=5.0))
            with pytest.raises(UpstreamError) as raised:
                await get(client, node.origin)
            assert not isinstance(raised.value, UpstreamTimeout)
            await node.closed(1)  # and the connection is not kept
            await client.close()

    run(test)


# -- a node closing an idle keep-alive connection ---------------------------------------------------


def stale_after_first(close: str) -> Script:
    """Answer the first request on connection 1, then take the next one and close (or reset)
    without answering: the node closed its idle connection just as our request went out."""

    async def script(conn: Conn) -> None:
        if conn.id == 1:
            await conn.request()
            await conn.send(ok(b"first"))
        if await conn.request() is None:
            return
        if conn.id == 1:
            if close == "reset":
                conn.reset()
            return  # the orderly close happens in RawNode._serve
        await conn.send(ok(b"fresh"))

    return script


@pytest.mark.parametrize("close", ["close", "reset"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_idempotent_request_on_a_stale_connection_is_retried_once(close: str, method: str) -> None:
    async def test() -> None:
        async with raw_node(stale_after_first(close)) as node:
            client = H1Upstream(SHORT)
            await get(client, node.origin, "/first")
            response, body = await get(client, node.origin, "/again", method=method)
            assert response.status == 200 and body == (b"" if method == "HEAD" else b"fresh")
            seen = [(r.conn, r.target) for r in node.requests]
            assert seen == [(1, "/first"), (1, "/again"), (2, "/again")]
            await client.close()

    run(test)


@pytest.mark.parametrize("close", ["close", "reset"])
@pytest.mark.parametrize("with_body", [False, True])
def test_post_on_a_stale_connection_is_never_retried(close: str, with_body: bool) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"uuid=123"

    async def test() -> None:
        async with raw_node(stale_after_first(close)) as node:
            client = H1Upstream(SHORT)
            await get(client, node.origin, "/first")
            headers = [(b"content-length", b"8")] if with_body else []
            with pytest.raises(UpstreamGone):
                await client.request("POST", node.origin, "/cancel", headers, body() if with_body else None)
            assert [(r.conn, r.method) for r in node.requests] == [(1, "GET"), (1, "POST")]
            _, answer = await get(client, node.origin, "/after")  # the client itself is fine
            assert answer == b"fresh"
            await client.close()

    run(test)


@pytest.mark.parametrize("pause_s", [0.0, 0.1])
def test_node_closing_each_connection_shortly_after_answering(pause_s: float) -> None:
    """The next request goes out before the close arrives (retried on a fresh connection), or
    after it (the pool drops the closed connection): either way every request gets its answer."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(ok(b"ok"))
        await asyncio.sleep(0.05)

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            for _ in range(4):
                _, body = await get(client, node.origin)
                assert body == b"ok"
                await asyncio.sleep(pause_s)
            assert node.connections == 4
            await client.close()

    run(test)


def test_a_retry_that_fails_again_is_not_retried_twice() -> None:
    async def script(conn: Conn) -> None:
        if conn.id == 1:
            await conn.request()
            await conn.send(ok(b"first"))
        await conn.request()  # then close without answering, every time

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            await get(client, node.origin, "/first")
            with pytest.raises(UpstreamGone):
                await get(client, node.origin, "/again")
            assert [r.conn for r in node.requests] == [1, 1, 2]
            await client.close()

    run(test)


# -- bodies that disagree with their Content-Length --------------------------------------------------


@pytest.mark.parametrize("small", [False, True])
def test_body_longer_than_declared_is_cut_and_the_connection_dropped(small: bool) -> None:
    async def script(conn: Conn) -> None:
        while (request := await conn.request()) is not None:
            if request.target == "/long":
                await conn.send(head("200 OK", "Content-Length: 5") + b"helloEXTRA BYTES")
            else:
                await conn.send(ok(b"clean"))

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            response, body = await get(client, node.origin, "/long", small=small)
            assert (body, response.content_length) == (b"hello", 5)
            _, body = await get(client, node.origin, "/next")
            assert body == b"clean"  # not "EXTRA BYTES" parsed as the next answer
            assert [r.conn for r in node.requests] == [1, 2]
            await client.close()

    run(test)


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("end", ["close", "reset"])
def test_body_shorter_than_declared_then_closed_is_an_error(small: bool, end: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(head("200 OK", "Content-Length: 100000") + b"x" * 5000)
        await asyncio.sleep(0.05)
        if end == "reset":
            conn.reset()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            response = await client.request("GET", node.origin, "/", [], None, small=small)
            received = 0
            with pytest.raises(UpstreamGone):
                if small:
                    await response.read()
                else:
                    async for chunk in response.chunks():
                        received += len(chunk)
            await response.aclose()
            assert small or received == 5000
            await client.close()

    run(test)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_reset_mid_body_is_a_clean_error_for_every_framing(framing: str) -> None:
    """A reset is never mistaken for the end of a body framed by the close."""
    heads = {
        "length": head("200 OK", "Content-Length: 1000000"),
        "chunked": head("200 OK", "Transfer-Encoding: chunked") + b"186A0\r\n",
        "close": head("200 OK", "Connection: close"),
    }

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(heads[framing] + b"y" * 50_000)
        await asyncio.sleep(0.05)
        conn.reset()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            response = await client.request("GET", node.origin, "/", [], None)
            received = 0
            with pytest.raises(UpstreamGone):
                async for chunk in response.chunks():
                    received += len(chunk)
            await response.aclose()
            assert received == 50_000
            await client.close()

    run(test)


# -- time limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_node_that_accepts_and_never_answers(small: bool, method: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.until_closed()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            asked = time.monotonic()
            with pytest.raises(UpstreamTimeout, match=r"^the node did not answer within 0\.4 s$"):
                await client.request(method, node.origin, "/task/x/info", [], None, small=small)
            assert 0.35 < time.monotonic() - asked < 2
            await node.closed(1)  # the connection is closed, not left behind
            assert len(node.requests) == 1  # a timeout is never retried
            await client.close()

    run(test)


def test_head_arriving_too_slowly_times_out() -> None:
    """A head that trickles in forever does not extend the limit with each byte."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.trickle(b"HTTP/1.1 200 OK\r\n" + b"x-slow: " + b"z" * 10_000, pause_s=0.02)

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            asked = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await client.request("GET", node.origin, "/", [], None)
            assert time.monotonic() - asked < 2
            await client.close()

    run(test)


def test_small_answer_whose_body_stalls_times_out_within_the_answer_limit() -> None:
    """The head comes late but in time, then the body stalls: the limit counts from the request,
    so the error comes 1 s after it (one limit for head and body), not 1 s after the head."""

    async def script(conn: Conn) -> None:
        await conn.request()
        await asyncio.sleep(0.8)
        await conn.send(head("200 OK", "Content-Length: 100") + b'{"uuid":')
        await conn.until_closed()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(Timeouts(answer_s=1.0, idle_s=1.0))
            asked = time.monotonic()
            response = await client.request("GET", node.origin, "/", [], None, small=True)
            with pytest.raises(UpstreamTimeout, match=r"^the node did not answer within 1 s$"):
                await response.read()
            await response.aclose()
            assert 0.95 < time.monotonic() - asked < 1.6
            await client.close()

    run(test)


def test_download_limit_is_per_pause_not_in_total() -> None:
    """A slow but steady download outlives the answer limit; a silent one ends after `idle_s`."""

    async def script(conn: Conn) -> None:
        request = await conn.request()
        assert request is not None
        await conn.send(head("200 OK", "Content-Length: 1000000"))
        for _ in range(10):  # 1 s in all, 0.1 s between pieces
            await conn.send(b"z" * 1000)
            await asyncio.sleep(0.1)
        if request.target == "/stalls":
            await conn.until_closed()
        else:
            await conn.send(b"z" * 990_000)

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(Timeouts(answer_s=0.3, idle_s=0.6))
            _, body = await get(client, node.origin, "/steady")
            assert len(body) == 1_000_000
            response = await client.request("GET", node.origin, "/stalls", [], None)
            received = 0
            with pytest.raises(UpstreamTimeout, match=r"^the node sent nothing for 0\.6 s$"):
                async for chunk in response.chunks():
                    received += len(chunk)
            await response.aclose()
            assert received == 10_000
            await client.close()

    run(test)


def test_node_that_never_reads_the_request_body_times_out() -> None:
    async def script(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(BOUND_S)  # never reads the body: our send buffer fills up

    async def endless() -> AsyncIterator[bytes]:
        block = b"b" * (1 << 20)
        while True:
            yield block

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            with pytest.raises(UpstreamTimeout, match=r"^the node accepted no request data for 0\.4 s$"):
                await client.request("POST", node.origin, "/", [], endless())
            await client.close()

    run(test)


def test_limits_do_not_fire_on_reused_connections_or_idle_ones() -> None:
    """Many requests on one connection, with a pause longer than the limits in between: the
    per-connection timer re-arms correctly and never cuts a request that answers in time."""

    async def script(conn: Conn) -> None:
        while (request := await conn.request()) is not None:
            await asyncio.sleep(0.4 if request.target == "/slowish" else 0)
            await conn.send(ok(request.target.encode()))

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(Timeouts(answer_s=1.0, idle_s=1.0))
            for i in range(30):
                target = "/slowish" if i % 10 == 0 else f"/{i}"
                _, body = await get(client, node.origin, target, small=i % 2 == 0)
                assert body == target.encode()
                if i == 15:
                    await asyncio.sleep(1.2)  # the timer fires while the connection idles in the pool
            assert node.connections == 1
            await client.close()

    run(test)


def test_default_limits_and_their_environment_knobs() -> None:
    default = Timeouts()
    assert default.connect_s + default.answer_s < 30, "must fit in PyODM's 30 s request timeout"
    assert Timeouts.from_env({}) == default
    tuned = Timeouts.from_env(
        {"CLUSTERODM_NODE_ANSWER_TIMEOUT_S": "2.5", "CLUSTERODM_NODE_IDLE_TIMEOUT_S": "7"}
    )
    assert (tuned.answer_s, tuned.idle_s) == (2.5, 7.0)
    ignored = Timeouts.from_env(
        {"CLUSTERODM_NODE_ANSWER_TIMEOUT_S": "soon", "CLUSTERODM_NODE_IDLE_TIMEOUT_S": "-1"}
    )
    assert ignored == default


# -- shutdown ------------------------------------------------------------------------------------------


def test_close_closes_pooled_connections_and_those_released_later() -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        if conn.id == 1:
            await conn.send(head("200 OK", "Content-Length: 8") + b"in")
            await asyncio.sleep(0.1)
            await conn.send(b"flight")
        else:
            await conn.send(ok(b"pooled"))
        await conn.until_closed()

    async def test() -> None:
        async with raw_node(script) as node:
            client = H1Upstream(SHORT)
            in_flight = await client.request("GET", node.origin, "/", [], None)  # connection 1
            await get(client, node.origin)  # connection 2, back to the pool
            await client.close()
            await node.closed(2)
            assert b"".join([c async for c in in_flight.chunks()]) == b"inflight"
            await in_flight.aclose()  # a complete response: would be pooled, is closed instead
            await node.closed(2, 1)

    run(test)


def test_cluster_close_closes_the_forwarding_pool(tmp_path: Path) -> None:
    """The embedded servers run no ASGI lifespan: `Cluster.close` (the shutdown path) does it."""

    async def script(conn: Conn) -> None:
        await serve_forever(conn, lambda request: ok(b"pooled"))
        await conn.gone()

    async def test() -> None:
        async with raw_node(script) as node:
            cluster = await Cluster.open(Config(data_dir=tmp_path / "data"))
            try:
                response = await cluster.upstream.request("GET", node.origin, "/", [], None, small=True)
                assert await response.read() == b"pooled"
                await response.aclose()
            finally:
                await cluster.close()
            await node.closed(1)

    run(test)
