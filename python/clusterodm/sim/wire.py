"""Response helpers that reproduce Express/NodeODM wire details (JSON charset, 404 page, CORS, auth)."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from clusterodm.nodeodm import v8json
from clusterodm.nodeodm.messages import INVALID_TOKEN

JSON_TYPE = "application/json; charset=utf-8"
Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status_code: int = 200) -> Response:
    """Compact JSON like Express's ``res.json`` (no ASCII escaping, UTF-8 charset)."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status_code, headers={"content-type": JSON_TYPE})


def json_error(message: str, **extra: Any) -> Response:
    """NodeODM's error convention: HTTP 200 with ``{"error": ...}``."""
    return json_response({"error": message, **extra})


def express_not_found(method: str, path: str) -> Response:
    """Express's default 404 HTML page (``Cannot GET /x``)."""
    body = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
        f"</head>\n<body>\n<pre>Cannot {method} {html.escape(path)}</pre>\n</body>\n</html>\n"
    )
    headers = {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": "default-src 'none'",
        "x-content-type-options": "nosniff",
    }
    return Response(body.encode(), status_code=404, headers=headers)


def token_ok(expected: str | None, request: Request) -> bool:
    """No configured token accepts anything; otherwise the ``token`` query parameter must match."""
    if not expected:
        return True
    given = request.query_params.get("token", "")
    return hmac.compare_digest(given.encode(), expected.encode())


def guarded(handler: Handler, *, auth: bool = True) -> Handler:
    """Wrap a route: token check first, then any unexpected exception becomes a JSON error."""

    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        if auth and not token_ok(request.app.state.sim.config.token, request):
            return json_error(INVALID_TOKEN)
        try:
            return await handler(request)
        except Exception as exc:  # NodeODM reports handler exceptions as JSON errors
            return json_error(str(exc))

    return wrapper


async def read_small_body(request: Request) -> dict[str, Any]:
    """Body of cancel/remove/restart: urlencoded or JSON; anything else (incl. multipart) is ignored."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if content_type == "application/json":
        # body-parser's strict json(): its error texts (JsonError) become the JSON error answer.
        data = v8json.loads_body(raw)
        return data if isinstance(data, dict) else {}
    return {}


class CorsLatencyMiddleware:
    """Adds ``Access-Control-Allow-Origin: *`` everywhere, answers preflights, and injects latency."""

    def __init__(self, app: Any, latency_ms: float = 0.0) -> None:
        self.app = app
        self.latency = latency_ms / 1000.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if scope["method"] == "OPTIONS":
            await self._preflight(scope, send)
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", b"*"))
                headers.append((b"x-powered-by", b"Express"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Any, send: Any) -> None:
        requested = dict(scope.get("headers", [])).get(b"access-control-request-headers", b"")
        headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET,HEAD,PUT,PATCH,POST,DELETE"),
            (b"vary", b"Access-Control-Request-Headers"),
            (b"content-length", b"0"),
        ]
        if requested:
            headers.append((b"access-control-allow-headers", requested))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
