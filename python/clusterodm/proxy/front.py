"""The raw-ASGI front of the NodeODM API: ClusterODM's request pipeline (spec 2.1), in order.

CORS -> the probes (`GET /healthz`, `GET /readyz`: no token, never forwarded) -> OPTIONS
preflight -> public static paths -> route names as Express matches them (any case, one trailing
slash) -> POST /commit -> /auth/info -> token check (a repeated `token` is refused) -> task-scoped
routes (a fast path that skips Starlette's routing, the hot path of every WebODM poll) -> `/` ->
the Starlette app (self-answered routes, task creation, cancel/remove/restart, and the `Cannot
handle <path>` fallback). Unexpected exceptions become `{"error": "exception"}` with the
traceback in the log; a request that needed the state store while it is unavailable gets
`UNAVAILABLE` (the store logs the outage once, not per request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.proxy.forward import (
    DropConnection,
    Message,
    Receive,
    Scope,
    Send,
    forward,
    request_headers,
    send_json,
)
from clusterodm.proxy.probes import PATHS as PROBE_PATHS
from clusterodm.proxy.probes import Probes
from clusterodm.proxy.query import query_token
from clusterodm.proxy.taskroute import TaskPath, TaskRoute, match_task_path
from clusterodm.proxy.upstream import Upstream

if TYPE_CHECKING:
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.providers import Provider
    from clusterodm.metrics import Metrics
    from clusterodm.proxy.handoff import UploadHandoff

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("clusterodm.proxy")

PUBLIC_SUFFIXES = (".css", ".js", ".woff", ".ttf", ".ico")
_ROUTES = frozenset(
    {
        "/info",
        "/options",
        "/cache/clear",
        "/auth/info",
        "/commit",
        "/task/list",
        "/task/new",
        "/task/new/init",
        "/task/cancel",
        "/task/remove",
        "/task/restart",
    }
)
_ROUTE_PREFIXES = ("/task/new/upload/", "/task/new/commit/")
_ROUTE_CLASSES = {
    "/": "static",
    "/healthz": "probe",
    "/readyz": "probe",
    "/info": "info",
    "/options": "options",
    "/cache/clear": "other",
    "/auth/info": "auth",
    "/commit": "webhook",
    "/metrics": "metrics",
    "/task/list": "task_list",
    "/task/new": "task_new",
    "/task/new/init": "task_new",
    "/task/cancel": "task_action",
    "/task/remove": "task_action",
    "/task/restart": "task_action",
}
"""Route classes of `route_class` (the metrics' `route` label) for the routes named by path alone."""
_TASK_CLASSES = {"info": "task_info", "output": "task_output"}
_CORS_TRIGGERS = (b"origin", b"access-control-request-method", b"access-control-request-headers")


def cors_headers(request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """ClusterODM's CORS: reflect the requested method/headers, and the Origin with credentials."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in request_headers:
        if name == b"access-control-request-method":
            out.append((b"access-control-allow-methods", value))
        elif name == b"access-control-request-headers":
            out.append((b"access-control-allow-headers", value))
        elif name == b"origin":
            out.append((b"access-control-allow-origin", value))
            out.append((b"access-control-allow-credentials", b"true"))
    return out


class ProxyFront:
    """ASGI app in front of the Starlette app; holds the shared forwarding client.

    `public_app` answers before the token check (the webhook), `app` after it. `provider` checks
    tokens, `registry` gives the reference node (web UI files), `handoff` (replicas sharing a
    store) sends other replicas' uploads to them, and long downloads register in `streams`.
    """

    def __init__(
        self,
        public_app: ASGIApp,
        app: ASGIApp,
        *,
        upstream: Upstream,
        tasks: TaskRoute,
        probes: Probes,
        provider: Provider,
        registry: NodeRegistry,
        handoff: UploadHandoff | None,
        streams: set[asyncio.Task[Any]],
        metrics: Metrics,
        metrics_public: bool,
    ) -> None:
        self.upstream = upstream
        self.tasks = tasks
        self.probes = probes
        self._public_app = public_app
        self._app = app
        self._provider = provider
        self._registry = registry
        self._handoff = handoff
        self._streams = streams
        self._requests = metrics.requests if metrics.enabled else None
        self._metrics_app = metrics.asgi_app() if metrics.enabled and metrics_public else None
        """`/metrics` on this port too (`--metrics-public`), before the token check."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        headers = scope["headers"]
        if any(name in _CORS_TRIGGERS for name, _ in headers):
            send = _with_headers(send, cors_headers(headers))
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if not status:
                status = message["status"]  # the first message starts the response
            await send(message)

        route: str | None = None
        try:
            route = await self._dispatch(scope, receive, tracking_send)
        except DropConnection:
            raise
        except StoreUnavailable as exc:
            if status:
                raise DropConnection from exc
            status = 200
            await send_json(send, {"error": UNAVAILABLE})
        except Exception as exc:
            log.exception("Error handling %s %s", scope["method"], scope["path"])
            if status:
                raise DropConnection from exc
            status = 200
            await send_json(send, {"error": "exception"})
        finally:
            if self._requests is not None:
                self._requests.add(route or route_class(scope["path"]), status)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Nothing to start or stop here: the upstream client belongs to whoever made it
        (`Cluster.close` closes it; the embedded servers run no lifespan anyway)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Answer the request; returns its route class (the metrics' `route` label) when the branch
        taken tells it, else None (`route_class` then reads it from the path)."""
        path: str = scope["path"]
        method: str = scope["method"]
        if path in PROBE_PATHS and method == "GET":
            await self.probes.answer(path, send)
            return "probe"
        if method == "OPTIONS":
            await send_json(send, {})  # preflight: CORS headers are what the browser needs
            return "preflight"
        if method in ("GET", "HEAD") and path.endswith(PUBLIC_SUFFIXES) and _is_static_path(path):
            await self._to_reference(scope, receive, send, path)
            return "static"
        if path.endswith("/") or not path.islower():
            routed = express_path(path)
            if routed != path:
                scope["path"] = path = routed  # what the Starlette routes match
        if path == "/commit":
            await self._public_app(scope, receive, send)
            return "webhook"
        if path == "/auth/info":
            await send_json(send, self._provider.auth_info())
            return "auth"
        if path == "/metrics" and self._metrics_app is not None:
            await self._metrics_app(scope, receive, send)
            return "metrics"
        token, refused = query_token(scope["query_string"])
        limits = None if refused else await self._provider.validate(token)
        if limits is None:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return None
        raw_path: bytes = scope.get("raw_path") or quote(path).encode()
        if raw_path[:6].lower() == b"/task/":
            task = match_task_path(raw_path)
            if isinstance(task, TaskPath):
                await self.tasks.handle(scope, receive, send, task, token)
                return task_class(task.action)
            if task is not None:
                await send_json(send, {"error": task})
                return "task_other"
        if path == "/" and method in ("GET", "HEAD"):
            await self._to_reference(scope, receive, send, "/")
            return "static"
        handoff = self._handoff  # replicas: another one may hold this upload session
        if handoff is not None and method == "POST" and await handoff.take(scope, receive, send, path, token):
            return "task_new"
        state = dict(scope.get("state") or {})
        state["token"] = token
        state["limits"] = limits
        scope["state"] = state
        await self._app(scope, receive, send)
        return None

    async def _to_reference(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Web UI files from the reference node: no query, no user token, no node token."""
        node = self._registry.reference_node()
        if node is None:
            await send_json(send, {"error": "No nodes are online."})
            return
        headers = [(k, v) for k, v in request_headers(scope) if k not in (b"cookie", b"authorization")]
        raw_path = scope.get("raw_path")
        target = raw_path.decode("latin-1") if raw_path else quote(path)
        await forward(
            scope,
            receive,
            send,
            self.upstream,
            node.base_url,
            target,
            node.name,
            headers,
            streams=self._streams,
        )


def express_path(path: str) -> str:
    """The route `path` names, matched as Express matches: in any case, with one trailing slash.

    ClusterODM and NodeODM both answer `/INFO` and `/task/list/`; the uuid in an upload or commit
    path keeps its case. Paths that name no route are returned unchanged.
    """
    trimmed = path[:-1] if len(path) > 1 and path.endswith("/") else path
    lowered = trimmed.lower()
    if lowered in _ROUTES:
        return lowered
    for prefix in _ROUTE_PREFIXES:
        if lowered.startswith(prefix) and len(trimmed) > len(prefix):
            return prefix + trimmed[len(prefix) :]
    return path


def route_class(path: str) -> str:
    """The route family a request path belongs to, for the request metrics (a few fixed names,
    never a uuid). Called with the path as `_dispatch` left it (route names already in lower case)."""
    known = _ROUTE_CLASSES.get(path)
    if known is not None:
        return known
    if path.startswith("/task/"):
        if path.startswith("/task/new/"):
            return "task_new"
        task = match_task_path(quote(path).encode())
        return task_class(task.action) if isinstance(task, TaskPath) else "task_other"
    if path.endswith(PUBLIC_SUFFIXES):
        return "static"
    return "other"


def task_class(action: str) -> str:
    """The route class of a task route's action (`info`, `output`, `download/...`, others)."""
    known = _TASK_CLASSES.get(action)
    if known is not None:
        return known
    return "task_download" if action.startswith("download") else "task_other"


def _is_static_path(path: str) -> bool:
    """A web-UI-looking file: never a task route, never a traversal (spec 8.24)."""
    return not path.lower().startswith("/task/") and "/../" not in path and "\\" not in path


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """Add our CORS headers, replacing a node's own (NodeODM sends `*`, which browsers refuse
    next to a reflected origin)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", []) if not h[0].lower().startswith(b"access-control-")]
            message = {**message, "headers": [*kept, *extra]}
        await send(message)

    return wrapped
