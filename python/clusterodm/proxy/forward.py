"""Stream one client request to a node and the node's answer back, at the ASGI level.

Nothing large is buffered: request bodies flow from `receive` into the upstream client as they
arrive, response bodies flow chunk by chunk into `send` (granian applies backpressure). Small
responses with a known length (task info, output) are read whole and sent in one message, which
spares a disconnect watcher on the hot path. While a large body streams, a watcher waits for
the client's `http.disconnect` and cancels the copy, so the node's connection is closed at once.

A node that fails before the response starts gets the client ClusterODM's answers: a dropped
connection when it refused or reset (so the client retries), else `{"error": "Proxy redirect
error: <node>: ..."}`, which names the node (a timeout included). Once the response has started,
a failure can only drop the client's connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from clusterodm.proxy.upstream import (
    HOP_BY_HOP,
    Headers,
    Upstream,
    UpstreamError,
    UpstreamGone,
    UpstreamResponse,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("clusterodm.proxy")

SMALL_BODY = 256 * 1024
"""Responses up to this size (with a Content-Length) are read whole: one `send`, no watcher."""

_DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {b"host"}
_JSON = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected while its request body was still being read."""


class DropConnection(Exception):
    """Raised out of the ASGI app after a truncated response start: the client sees a broken
    connection (ClusterODM destroys the socket when a node refuses or resets, so clients retry)."""


def request_headers(scope: Scope) -> Headers:
    """Client headers worth passing on: no hop-by-hop ones, no Host (the upstream client sets it)."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    dropped = _DROPPED_REQUEST_HEADERS
    for name, value in raw:
        if name == b"connection":
            dropped = dropped | {v.strip().lower() for v in value.split(b",")}
    return [(n, v) for n, v in raw if n not in dropped]


def has_request_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return False


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def send_json(send: Send, data: Any) -> None:
    body = orjson.dumps(data)
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drop_connection(send: Send) -> None:
    """Start a response that can never complete, then abort: the client sees a broken connection."""
    headers = [(b"content-length", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 502, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    raise DropConnection


async def forward(
    scope: Scope,
    receive: Receive,
    send: Send,
    upstream: Upstream,
    origin: str,
    target: str,
    node_name: str,
    headers: Headers | None = None,
    small: bool = False,
    streams: set[asyncio.Task[Any]] | None = None,
    failed: Callable[[Send, Exception], Awaitable[None]] | None = None,
) -> bytes | None:
    """Proxy the request in `scope` to `origin` + `target`; see the module docstring for the
    streaming rules. Long responses register their task in `streams`, so a shutdown can end them.
    `failed`, if given, answers instead when the upstream fails before its answer starts.

    Returns the body of a 200 answer that was read whole (for callers that learn from it)."""
    body = _body(receive) if has_request_body(scope) else None
    try:
        response = await upstream.request(
            scope["method"],
            origin,
            target,
            request_headers(scope) if headers is None else headers,
            body,
            small,
        )
    except ClientGone:
        log.info("Client went away while sending %s %s to %s", scope["method"], scope["path"], node_name)
        return None
    except UpstreamGone as exc:
        if failed is not None:
            await failed(send, exc)
            return None
        log.warning(
            "Node %s dropped %s %s (%s); dropping the client too",
            node_name,
            scope["method"],
            scope["path"],
            exc,
        )
        await drop_connection(send)
        return None
    except UpstreamError as exc:
        if failed is not None:
            await failed(send, exc)
            return None
        await _node_error(send, node_name, scope, exc)
        return None
    try:
        if small or (response.content_length is not None and response.content_length <= SMALL_BODY):
            try:
                data = await response.read()
            except UpstreamGone as exc:
                log.warning("Node %s broke off its answer to %s (%s)", node_name, scope["path"], exc)
                await drop_connection(send)
                return None
            except UpstreamError as exc:
                await _node_error(send, node_name, scope, exc)
                return None
            await send(
                {"type": "http.response.start", "status": response.status, "headers": response.headers}
            )
            await send({"type": "http.response.body", "body": data})
            return data if response.status == 200 else None
        await _stream(response, receive, send, node_name, streams)
        return None
    except (UpstreamGone, UpstreamError) as exc:  # the response has started: only a drop can tell
        log.warning("Node %s broke off %s (%s)", node_name, scope["path"], exc)
        raise DropConnection from exc
    finally:
        await response.aclose()


async def _node_error(send: Send, node_name: str, scope: Scope, exc: UpstreamError) -> None:
    log.warning("Proxy redirect error to %s for %s: %s", node_name, scope["path"], exc)
    await send_json(send, {"error": f"Proxy redirect error: {node_name}: {exc}"})


async def _stream(
    response: UpstreamResponse,
    receive: Receive,
    send: Send,
    node_name: str,
    streams: set[asyncio.Task[Any]] | None,
) -> None:
    task = asyncio.current_task()
    assert task is not None
    if streams is not None:
        streams.add(task)
    disconnected = finished = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        if not finished:
            disconnected = True
            task.cancel()

    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    watcher = asyncio.ensure_future(watch())
    try:
        remaining = response.content_length
        async for chunk in response.chunks():
            if remaining is not None:
                remaining -= len(chunk)
                finished = remaining <= 0  # a client may hang up once it has every byte
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finished = True
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        if disconnected and task.uncancel() == 0:
            log.info("Client went away during a download from %s; closed the node connection", node_name)
            return
        raise
    finally:
        finished = True
        watcher.cancel()
        if streams is not None:
            streams.discard(task)
