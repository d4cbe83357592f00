"""Routes matched the way Express 4 matches them, so the simulator is as lenient and as strict as NodeODM.

Express compiles ``/task/:uuid/info`` to ``^/task/([^/]+?)/info/?$`` (case-insensitive, one optional
trailing slash) and tests it against the raw path, before any percent-decoding: ``%2F`` stays inside
its segment, and only the captured parameters are decoded afterwards (``decodeURIComponent``; a
malformed escape is a 400). Starlette's own routes match the decoded path, which turns ``a%2Fb`` into
two segments and answers 404 where NodeODM answers a JSON error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote, unquote_to_bytes

from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, request_response
from starlette.types import Receive, Scope, Send

from clusterodm.sim.wire import express_error_page

Endpoint = Callable[[Request], Awaitable[Response]]
_PARAM = re.compile(r":(\w+)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def compile_path(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    """Express's (path-to-regexp 0.1) regular expression for ``pattern`` and its parameter names."""
    names: list[str] = []
    regex = ""
    position = 0
    for match in _PARAM.finditer(pattern):
        regex += re.escape(pattern[position : match.start()]) + "([^/]+?)"
        names.append(match.group(1))
        position = match.end()
    regex += re.escape(pattern[position:].rstrip("/"))
    return re.compile(f"^{regex}/?$", re.IGNORECASE), names


def raw_pathname(scope: Scope) -> str:
    """The path as the client wrote it (no query), which is what Express matches routes against."""
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    return quote(scope["path"])


def decode_param(value: str) -> str:
    """``decodeURIComponent``: raises ``ValueError`` on a malformed escape or invalid UTF-8."""
    if _BAD_ESCAPE.search(value):
        raise ValueError(value)
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(value) from exc


class ExpressRoute(BaseRoute):
    """One route matched against the raw path; a wrong method is a partial match (Express: 404)."""

    def __init__(self, pattern: str, endpoint: Endpoint, methods: Iterable[str]) -> None:
        self.path = pattern
        self.regex, self.param_names = compile_path(pattern)
        self.methods = {m.upper() for m in methods}
        if "GET" in self.methods:
            self.methods.add("HEAD")  # Express answers HEAD with the GET route
        self.app = request_response(endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = self.regex.match(raw_pathname(scope))
        if found is None:
            return Match.NONE, {}
        child = {"raw_path_params": dict(zip(self.param_names, found.groups(), strict=True))}
        return (Match.FULL if scope["method"] in self.methods else Match.PARTIAL), child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            raise HTTPException(status_code=405)  # the app's handler turns this into Express's 404 page
        params: dict[str, str] = {}
        for name, raw in scope["raw_path_params"].items():
            try:
                params[name] = decode_param(raw)
            except ValueError:
                page = express_error_page(400, f"URIError: Failed to decode param '{raw}'")
                await page(scope, receive, send)
                return
        scope["path_params"] = params
        await self.app(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)
