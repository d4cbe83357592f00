"""`AdminGuard`'s decisions, called in-process over ASGI (milliseconds, no sockets).

The guard wraps a small app that records what reached it, so each test states both the answer
and whether the admin app behind ever saw the request. test_web_api.py checks the same rules on
the real admin web over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from clusterodm.admin.guard import SECURITY_HEADERS, AdminGuard

PASSWORD = "s3cret"
LOOPBACK = "http://127.0.0.1:10000"
JSON = {"content-type": "application/json"}


class Behind:
    """The admin app behind the guard: answers `ok` and counts the requests it got."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def endpoint(self, request: Request) -> Response:
        self.reached.append(f"{request.method} {request.url.path}")
        headers = {"x-frame-options": "SAMEORIGIN"} if request.url.path == "/framed" else None
        return PlainTextResponse("ok", headers=headers)

    def app(self) -> Starlette:
        methods = ["GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS"]
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=methods)])


class Client:
    """Synchronous calls into the guarded app (one event loop per request; each takes a millisecond)."""

    def __init__(self, app: AdminGuard, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(call())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


def client(password: str = "", base_url: str = LOOPBACK) -> tuple[Client, Behind]:
    behind = Behind()
    return Client(AdminGuard(behind.app(), password), base_url), behind


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_without_password_only_ip_or_localhost_hosts_are_served() -> None:
    """A DNS name could be rebound to 127.0.0.1 by a web page; an IP literal cannot."""
    for base in (LOOPBACK, "http://localhost:10000", "http://[::1]:10000", "http://10.0.0.5"):
        c, behind = client(base_url=base)
        assert c.get("/r/info").text == "ok", base
        assert behind.reached == ["GET /r/info"]
    for base in ("http://attacker.example:10000", "http://127.0.0.1.nip.io"):
        c, behind = client(base_url=base)
        reply = c.get("/r/info")
        assert reply.status_code == 403 and "by IP address or localhost" in reply.text
        assert behind.reached == []


def test_password_guards_everything_but_signout() -> None:
    c, behind = client(PASSWORD, base_url="http://admin.example:10000")  # any host name then
    for headers in (
        {},
        basic("admin", "wrong"),
        basic("root", PASSWORD),
        {"authorization": "Basic !!!not-base64"},
        {"authorization": "Bearer " + PASSWORD},
        {"authorization": "Basic " + base64.b64encode(b"admin" + PASSWORD.encode()).decode()},
    ):
        reply = c.get("/r/info", headers=headers)
        assert reply.status_code == 401, headers
        assert reply.headers["www-authenticate"] == 'Basic realm="ClusterODM"'
    assert behind.reached == []
    assert c.get("/r/info", headers=basic("admin", PASSWORD)).text == "ok"
    assert c.get("/signout").text == "ok"  # public: the page that makes the browser forget
    assert behind.reached == ["GET /r/info", "GET /signout"]


def test_writes_must_be_same_origin_json() -> None:
    c, behind = client()
    same = {**JSON, "origin": LOOPBACK}
    assert c.post("/r/node/add", headers=same, content=b"{}").text == "ok"
    assert c.post("/r/node/add", headers=JSON, content=b"{}").text == "ok"  # no Origin: not a browser
    assert c.post("/r/node/add", headers={**JSON, "sec-fetch-site": "none"}, content=b"{}").text == "ok"
    assert len(behind.reached) == 3
    for refused in (
        {**JSON, "origin": "http://attacker.example"},
        {**JSON, "origin": "null"},
        {**JSON, "origin": "https://127.0.0.1:10000"},  # another scheme is another origin
        {**JSON, "origin": "http://127.0.0.1:10001"},
        {**JSON, "sec-fetch-site": "cross-site"},
        {**JSON, "sec-fetch-site": "same-site", "origin": LOOPBACK},
    ):
        reply = c.post("/r/node/add", headers=refused, content=b"{}")
        assert (reply.status_code, reply.text) == (403, "Cross-origin requests are not allowed"), refused
        assert c.delete("/r/node/1", headers=refused).status_code == 403
    for form in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        reply = c.post("/r/node/add", headers={"content-type": form, "origin": LOOPBACK}, content=b"")
        assert reply.status_code == 415, form
    assert len(behind.reached) == 3


def test_reads_are_not_origin_checked() -> None:
    """GET/HEAD/OPTIONS change nothing; the browser's same-origin policy keeps their answers private."""
    c, behind = client()
    cross = {"origin": "http://attacker.example", "sec-fetch-site": "cross-site"}
    assert c.get("/r/node/list", headers=cross).text == "ok"
    assert c.options("/r/node/list", headers=cross).status_code == 200
    assert behind.reached == ["GET /r/node/list", "OPTIONS /r/node/list"]


def test_security_headers_added_without_overriding_the_app() -> None:
    c, _ = client()
    reply = c.get("/r/info")
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value
    framed = c.get("/framed")
    assert framed.headers.get_list("x-frame-options") == ["SAMEORIGIN"]


def test_lifespan_passes_through() -> None:
    """Non-HTTP scopes are not the guard's business: they reach the app untouched."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    asyncio.run(AdminGuard(app, "")({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"] and sent == [{"type": "lifespan.startup.complete"}]
