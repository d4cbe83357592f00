"""`ProxyFront`'s decisions, called in-process over ASGI (milliseconds, no sockets).

A real `Cluster` (SQLite store in a temporary folder, no nodes) behind the real front; where the
test needs to see what gets through, a small ASGI app that records it stands in for the Starlette
app behind the front. The process-level tests (test_auth_local.py, test_routed.py) cover the same
rules over real HTTP with simulator nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusterodm.config import Config
from clusterodm.proxy.forward import DropConnection, Receive, Scope, Send
from clusterodm.services import Cluster

Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


class Recorder:
    """The app behind the front: answers 200 `reached` and keeps the scopes it was called with."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None, fail: str = "") -> None:
        self.scopes: list[Scope] = []
        self.headers = headers or []
        self.fail = fail
        """`before`: raise before answering; `during`: raise after the response started."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if self.fail == "before":
            raise RuntimeError("boom before the answer")
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        if self.fail == "during":
            raise RuntimeError("boom during the answer")
        await send({"type": "http.response.body", "body": b"reached"})


@asynccontextmanager
async def opened(tmp_path: Path, **config: Any) -> AsyncIterator[Cluster]:
    cluster = await Cluster.open(Config(data_dir=tmp_path / "data", **config))
    try:
        yield cluster
    finally:
        await cluster.close()


def run(tmp_path: Path, scenario: Scenario, app: Recorder | None = None, **config: Any) -> None:
    """Run `scenario` against the front of a fresh cluster (`Cluster.proxy_app`, or `app` behind it)."""

    async def main() -> None:
        async with opened(tmp_path, **config) as cluster:
            front = cluster.proxy_app() if app is None else cluster.proxy_front(app, app)
            transport = httpx.ASGITransport(app=front)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
                await scenario(client)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_token_check(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for url in ("/info", "/info?token=wrong", "/info?token=abc&_debugUnauthorized=1", "/task/list"):
            reply = await client.get(url)
            assert (reply.status_code, reply.content) == (401, b""), url
        assert (await client.get("/info?token=abc")).json()["version"] == "1.5.3"
        assert (await client.get("/auth/info")).json()["loginUrl"] is None  # no token needed
        assert (await client.get("/nope?token=abc")).json() == {"error": "Cannot handle /nope"}

    run(tmp_path, scenario, token="abc")


def test_local_provider_without_token_accepts_any(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/info?token=whatever")).json()["maxImages"] is None
        assert (await client.get("/info?_debugUnauthorized=1")).status_code == 401

    run(tmp_path, scenario)


def test_public_paths_skip_the_token_but_not_task_routes(tmp_path: Path) -> None:
    """Web UI files go to the reference node without auth (none online here); `.js` under
    `/task/` or with a `..` segment is no static file and needs the token (spec 8.24)."""

    async def scenario(client: httpx.AsyncClient) -> None:
        for url in ("/app.js", "/css/main.css", "/favicon.ico"):
            assert (await client.get(url)).json() == {"error": "No nodes are online."}, url
        assert (await client.post("/app.js")).status_code == 401  # only GET/HEAD are static
        assert (await client.get("/task/x.js")).status_code == 401
        assert (await client.get("/a/%2e%2e/b.js")).status_code == 401  # a `..` segment once decoded
        assert (await client.get("/")).status_code == 401  # the web UI's page itself needs the token
        assert (await client.get("/?token=abc")).json() == {"error": "No nodes are online."}

    run(tmp_path, scenario, token="abc")


def test_commit_webhook_needs_its_secret_not_a_token(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.post("/commit", content=b'{"uuid": "x"}')
        assert (reply.status_code, reply.json()) == (401, {"error": "Unauthorized"})
        assert (await client.get("/commit")).json() == {"error": "Cannot handle /commit"}

    run(tmp_path, scenario, token="abc")


def test_cors_reflects_the_request_and_preflight_is_answered(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        preflight = await client.options(
            "/task/new/init",
            headers={
                "Origin": "https://webodm.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "set-uuid",
            },
        )
        assert (preflight.status_code, preflight.json()) == (200, {})  # no token needed
        assert preflight.headers["access-control-allow-origin"] == "https://webodm.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert preflight.headers["access-control-allow-methods"] == "POST"
        assert preflight.headers["access-control-allow-headers"] == "set-uuid"
        plain = await client.get("/info?token=abc")
        assert not [h for h in plain.headers if h.startswith("access-control-")]  # no wildcard, ever
        refused = await client.get("/info", headers={"Origin": "https://webodm.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://webodm.example"

    run(tmp_path, scenario, token="abc")


def test_node_cors_headers_are_replaced(tmp_path: Path) -> None:
    """NodeODM's `Access-Control-Allow-Origin: *` never reaches a browser next to ours."""
    app = Recorder(headers=[(b"access-control-allow-origin", b"*"), (b"x-node", b"1")])

    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.get("/info", headers={"Origin": "https://a.example"})
        assert reply.headers.get_list("access-control-allow-origin") == ["https://a.example"]
        assert reply.headers["x-node"] == "1"
        assert (await client.get("/info")).headers["access-control-allow-origin"] == "*"

    run(tmp_path, scenario, app=app)


def test_the_app_behind_sees_token_and_limits(tmp_path: Path) -> None:
    app = Recorder()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/task/new/init?token=abc")).content == b"reached"
        assert (await client.get("/info?token=wrong")).status_code == 401

    run(tmp_path, scenario, app=app, token="abc")
    assert len(app.scopes) == 1
    state = app.scopes[0]["state"]
    assert state["token"] == "abc" and state["limits"].max_images is None


def test_a_failure_before_the_answer_is_a_json_error(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.get("/info")
        assert (reply.status_code, reply.json()) == (200, {"error": "exception"})

    run(tmp_path, scenario, app=Recorder(fail="before"))


def test_a_failure_after_the_answer_started_breaks_the_connection(tmp_path: Path) -> None:
    """Half an answer must not look complete: the connection is dropped instead."""

    async def scenario(client: httpx.AsyncClient) -> None:
        with pytest.raises(DropConnection):  # the server then aborts the connection
            await client.get("/info")

    run(tmp_path, scenario, app=Recorder(fail="during"))
