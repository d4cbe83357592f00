"""Response helpers that reproduce Express/NodeODM wire details (JSON charset, 404 page, CORS, auth)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
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


def weak_etag(body: bytes) -> str:
    """Express's default ETag (the ``etag`` package, weak): byte length in hex and a cut SHA-1."""
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]  # noqa: S324 (not security)
    return f'W/"{len(body):x}-{digest}"'


def json_response(data: Any, status_code: int = 200) -> Response:
    """Compact JSON like Express's ``res.json`` (no ASCII escaping, UTF-8 charset, weak ETag)."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(
        body, status_code=status_code, headers={"content-type": JSON_TYPE, "etag": weak_etag(body)}
    )


def json_error(message: str, **extra: Any) -> Response:
    """NodeODM's error convention: HTTP 200 with ``{"error": ...}``."""
    return json_response({"error": message, **extra})


_URL_UNSAFE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^\x21\x23-\x3B\x3D\x3F-\x5F\x61-\x7A\x7C\x7E%]")
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def _encode_url(path: str) -> str:
    """The ``encodeurl`` package: percent-encode what may not appear in a URL, keep valid escapes."""
    return _URL_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("latin-1")), path)


def escape_html(text: str) -> str:
    """The ``escape-html`` package Express's error pages use (``'`` becomes ``&#39;``)."""
    return "".join(_HTML_ESCAPES.get(c, c) for c in text)


def express_error_page(status: int, message: str) -> Response:
    """Express's default error page (finalhandler): the message in a ``<pre>``, no ETag."""
    body = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
        f"</head>\n<body>\n<pre>{escape_html(message)}</pre>\n</body>\n</html>\n"
    )
    headers = {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": "default-src 'none'",
        "x-content-type-options": "nosniff",
    }
    return Response(body.encode(), status_code=status, headers=headers)


def express_not_found(method: str, raw_path: str) -> Response:
    """Express's default 404 HTML page (``Cannot GET /x``), naming the path as the client sent it."""
    return express_error_page(404, f"Cannot {method} {_encode_url(raw_path)}")


_ARRAY_KEY = re.compile(r"\[\d*\]")


def _query_pairs(request: Request, name: str) -> list[tuple[str, str]]:
    """The query parameters Express's parser (qs) folds into ``req.query[name]``."""
    query = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return [(key, value) for key, value in query if key == name or key.startswith(name + "[")]


def query_string_value(request: Request, name: str) -> str | None:
    """``String(req.query[name])`` in NodeODM: a repeated parameter is a list and reads ``"a,b"``.

    ``name[]=x`` is a list too, ``name[k]=x`` an object (``"[object Object]"``).
    """
    pairs = _query_pairs(request, name)
    if not pairs:
        return None
    if len(pairs) == 1 and pairs[0][0] == name:
        return pairs[0][1]
    if any(key != name and not _ARRAY_KEY.fullmatch(key[len(name) :]) for key, _ in pairs):
        return "[object Object]"
    return ",".join(value for _, value in pairs)


def token_ok(expected: str | None, request: Request) -> bool:
    """No configured token accepts anything; otherwise the ``token`` query parameter must match.

    Express's query parser (qs) makes ``?token=a&token=b`` and ``?token[]=a`` a list, and a list never
    equals the node's token: NodeODM refuses those even when one of the values is right.
    """
    if not expected:
        return True
    given = _query_pairs(request, "token")
    if len(given) != 1 or given[0][0] != "token":
        return False
    return hmac.compare_digest(given[0][1].encode(), expected.encode())


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


_BODY_HEADERS = (b"content-type", b"content-length", b"transfer-encoding")
_NO_CACHE = re.compile(rb"(?:^|,)\s*?no-cache\s*?(?:,|$)")


def is_fresh(request_headers: dict[bytes, bytes], etag: bytes | None) -> bool:
    """The ``fresh`` package as Express uses it: may a GET be answered 304 for this ETag?

    Only ``If-None-Match`` can make a simulator answer fresh: its answers carry no Last-Modified,
    so an ``If-Modified-Since`` alone (or beside a matching tag) leaves the answer stale.
    """
    none_match = request_headers.get(b"if-none-match")
    modified_since = request_headers.get(b"if-modified-since")
    if not none_match and not modified_since:
        return False
    if _NO_CACHE.search(request_headers.get(b"cache-control", b"")):
        return False
    if none_match and none_match != b"*":
        if not etag:
            return False
        tags = [t for t in re.split(rb"[ ,]+", none_match) if t]
        if not any(t == etag or t == b"W/" + etag or b"W/" + t == etag for t in tags):
            return False
    return not modified_since


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

        request_headers = dict(scope.get("headers", []))
        conditional = scope["method"] in ("GET", "HEAD")
        not_modified = False

        async def send_with_cors(message: Any) -> None:
            nonlocal not_modified
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", b"*"))
                headers.append((b"x-powered-by", b"Express"))
                status = message["status"]
                etag = dict(headers).get(b"etag")
                if conditional and etag and 200 <= status < 300 and is_fresh(request_headers, etag):
                    # Express's res.send (the answers with an ETag): 304, no body, no Content-Type/Length.
                    # Streamed downloads bypass res.send and are never 304, even for `If-None-Match: *`.
                    not_modified = True
                    status = 304
                    headers = [(k, v) for k, v in headers if k not in _BODY_HEADERS]
                message = {**message, "status": status, "headers": headers}
            elif message["type"] == "http.response.body" and not_modified:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
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
