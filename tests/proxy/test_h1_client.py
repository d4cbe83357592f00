"""The built-in forwarding client (`upstream_h1`) against a scripted HTTP server in a subprocess:
framing (Content-Length, chunked, until-close, 100 Continue), keep-alive reuse, a node closing an
idle connection, a reset in the middle of a body, refused connections, and request bodies."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clusterodm.proxy.upstream import UpstreamGone
from clusterodm.proxy.upstream_h1 import H1Response, H1Upstream
from support.procs import free_port, start_process, stop_process, wait_http

RAWNODE = Path(__file__).with_name("rawnode.py")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("rawnode") / "rawnode.log"
    proc = start_process([sys.executable, str(RAWNODE), str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/echo", proc=proc, log_path=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


async def get(client: H1Upstream, origin: str, target: str) -> tuple[H1Response, bytes]:
    response = await client.request("GET", origin, target, [(b"accept", b"*/*")], None, small=False)
    try:
        return response, b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()


def conn_id(response: H1Response) -> bytes:
    return dict(response.headers)[b"x-conn"]


def test_keep_alive_reuse_and_content_length(origin: str) -> None:
    async def run() -> None:
        client = H1Upstream()
        first, body = await get(client, origin, "/length/10")
        assert (first.status, body, first.content_length) == (200, b"x" * 10, 10)
        assert dict(first.headers)[b"content-length"] == b"10"
        assert b"keep-alive" not in dict(first.headers)  # hop-by-hop dropped
        second = await client.request("GET", origin, "/length/5", [], None, small=True)
        assert await second.read() == b"xxxxx"
        await second.aclose()
        assert conn_id(second) == conn_id(first)
        await client.close()

    asyncio.run(run())


def test_chunked_response_is_decoded_and_connection_reused(origin: str) -> None:
    async def run() -> None:
        client = H1Upstream()
        response, body = await get(client, origin, "/chunked")
        assert body == b"hello chunked world"
        names = dict(response.headers)
        assert response.content_length is None
        assert b"transfer-encoding" not in names and b"content-length" not in names
        again, _ = await get(client, origin, "/length/1")
        assert conn_id(again) == conn_id(response)
        small = await client.request("GET", origin, "/chunked", [], None, small=True)
        assert await small.read() == b"hello chunked world"
        await small.aclose()
        await client.close()

    asyncio.run(run())


def test_node_closing_between_requests_gets_a_fresh_connection(origin: str) -> None:
    async def run() -> None:
        client = H1Upstream()
        for _ in range(5):
            # The next request goes out before the loop has seen the close: the stale connection
            # fails without a byte of answer and the request is retried on a new connection.
            first, body = await get(client, origin, "/then-close")
            assert body == b"ok"
            second, body = await get(client, origin, "/length/3")
            assert body == b"xxx"
            assert conn_id(second) != conn_id(first)
        await client.close()

    asyncio.run(run())


def test_body_until_close_and_interim_response(origin: str) -> None:
    async def run() -> None:
        client = H1Upstream()
        response, body = await get(client, origin, "/until-close")
        assert (body, response.content_length) == (b"the end is EOF", None)
        interim, body = await get(client, origin, "/continue")
        assert (interim.status, body) == (201, b"done")
        await client.close()

    asyncio.run(run())


def test_partial_body_then_reset_raises_gone(origin: str) -> None:
    async def run() -> None:
        client = H1Upstream()
        response = await client.request("GET", origin, "/reset", [], None)
        assert response.content_length == 1_000_000
        received = 0
        with pytest.raises(UpstreamGone):
            async for chunk in response.chunks():
                received += len(chunk)
        await response.aclose()
        assert 0 < received < 1_000_000
        after, body = await get(client, origin, "/length/2")
        assert body == b"xx" and conn_id(after) != conn_id(response)
        await client.close()

    asyncio.run(run())


def test_refused_connection_raises_gone() -> None:
    async def run() -> None:
        client = H1Upstream()
        with pytest.raises(UpstreamGone):
            await client.request("GET", f"http://127.0.0.1:{free_port()}", "/info", [], None)

    asyncio.run(run())


def test_request_bodies_with_length_and_chunked(origin: str) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"a=1", b"&b=", b"2" * 100_000):
            yield part

    async def run() -> None:
        client = H1Upstream()
        headers = [(b"content-type", b"text/plain"), (b"expect", b"100-continue")]
        response = await client.request("POST", origin, "/echo?x=%20y", headers, parts())
        echo = json.loads(await response.read())
        await response.aclose()
        assert echo["request"] == "POST /echo?x=%20y HTTP/1.1"
        assert echo["body"] == "a=1&b=" + "2" * 100_000
        assert echo["headers"]["transfer-encoding"] == "chunked"
        assert echo["headers"]["host"] == origin.removeprefix("http://")
        assert "expect" not in echo["headers"]
        sized = [(b"content-length", str(len(b"a=1&b=") + 100_000).encode())]
        response = await client.request("POST", origin, "/echo", sized, parts())
        echo = json.loads(await response.read())
        await response.aclose()
        assert echo["body"] == "a=1&b=" + "2" * 100_000 and "transfer-encoding" not in echo["headers"]
        empty = await client.request("POST", origin, "/echo", [], None)
        assert json.loads(await empty.read())["headers"]["content-length"] == "0"
        await empty.aclose()
        await client.close()

    asyncio.run(run())
