"""Access rules of the admin web, as one ASGI middleware.

ClusterODM's admin web answered `Access-Control-Allow-Origin: *` without a password, so any web
page an operator visited could add or delete nodes (spec 8.23). Here:
- with `--admin-pass`, HTTP basic auth (user `admin`, realm `ClusterODM`) guards everything but
  `/signout`;
- without it, only requests addressed to an IP literal or `localhost` are served, which stops
  DNS-rebinding pages from reading or driving a loopback-only admin;
- state-changing requests must be JSON and same-origin (browsers attach cached basic-auth
  credentials to cross-site requests, so the password alone does not stop a forged form post).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("clusterodm.admin")

REALM = "ClusterODM"
USER = "admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/signout"})
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def _host_name(host_header: str) -> str:
    """The name part of a Host header (`[::1]:10000` -> `::1`, `a:1` -> `a`)."""
    return urlsplit(f"//{host_header}").hostname or ""


def is_direct_host(host_header: str) -> bool:
    """Whether the request names us by IP address or `localhost` (no DNS name to rebind)."""
    name = _host_name(host_header)
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_basic_auth(authorization: str | None, password: str) -> bool:
    """Constant-time check of `Authorization: Basic base64(admin:password)`."""
    if not authorization or not authorization[:6].lower() == "basic ":
        return False
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, given = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, USER.encode())
    pass_ok = hmac.compare_digest(given, password.encode())
    return bool(sep) and user_ok and pass_ok


def same_origin(headers: Headers, scheme: str) -> bool:
    """The browser says the request comes from our own page (or it is not a browser at all)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:  # not a browser's cross-site request (those carry an Origin on POST/DELETE)
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


def is_json(headers: Headers) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


class AdminGuard:
    """Wraps the admin app; refuses requests that fail the rules above."""

    def __init__(self, app: ASGIApp, password: str) -> None:
        self.app = app
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        if not self.password and not is_direct_host(headers.get("host", "")):
            log.warning("Admin web: refused a request for host %r (DNS rebinding?)", headers.get("host"))
            return PlainTextResponse("Address the admin web by IP address or localhost", 403)
        if path in PUBLIC_PATHS:
            return None
        if self.password and not check_basic_auth(headers.get("authorization"), self.password):
            return PlainTextResponse(
                "Authentication required", 401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'}
            )
        if method not in SAFE_METHODS:
            if not same_origin(headers, scope.get("scheme", "http")):
                log.warning("Admin web: refused a cross-origin %s %s", method, path)
                return PlainTextResponse("Cross-origin requests are not allowed", 403)
            if not is_json(headers):
                return PlainTextResponse("Send JSON (Content-Type: application/json)", 415)
        return None
