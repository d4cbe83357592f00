"""The admin web: a static page plus ClusterODM's `/r/` JSON API (node tokens left out).

It runs as a second embedded server in the proxy's process and event loop, so it reads the
live registry, routes and task table directly. Access rules are in `clusterodm.admin.guard`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from clusterodm import __version__
from clusterodm.admin.guard import AdminGuard
from clusterodm.admin.taskboard import TaskBoard
from clusterodm.admin.taskdetail import TaskDetails, TaskNotFound
from clusterodm.admin.views import node_summary, queue_order, queue_public, replica_public
from clusterodm.cluster.node import Node
from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable

if TYPE_CHECKING:
    from clusterodm.admin.commands import RemoveNode
    from clusterodm.admin.history import History
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.replicas import Replica
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.store import Store
    from clusterodm.cluster.tasks import TaskTable
    from clusterodm.metrics import Metrics

log = logging.getLogger("clusterodm.admin")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024

SIGNED_OUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><h1>Signed out</h1><p><a href="/">Sign in again</a></p></body></html>
"""


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status_code,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, None when it is missing, too big or not an object."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


class AdminApi:
    """Handlers of the `/r/` routes.

    `cli_port` and `nodes_file` tell the page where nodes can be added (its "no node yet" help).
    """

    def __init__(
        self,
        *,
        registry: NodeRegistry,
        remove_node: RemoveNode,
        routes: RouteIndex,
        tasks: TaskTable,
        node_client: NodeClient,
        store: Store,
        replica: Replica,
        history: History,
        cli_port: int,
        nodes_file: Path,
    ) -> None:
        self._registry = registry
        self._remove_node = remove_node
        self._store = store
        self._replica = replica
        self._history = history
        self._cli_port = cli_port
        self._nodes_file = nodes_file
        self._board = TaskBoard(routes, tasks, registry, node_client)
        self._details = TaskDetails(routes, tasks, registry, node_client)

    async def info(self, request: Request) -> Response:
        return _json(
            {
                "name": "ClusterODM",
                "version": __version__,
                # For the page's "no node yet" help: where nodes can be added.
                "cliPort": self._cli_port,
                "nodesFile": str(self._nodes_file),
            }
        )

    async def node_list(self, request: Request) -> Response:
        registry = self._registry
        now = registry.now()
        nodes = [
            node_summary(i, node, now, registry.free_slots(node))
            for i, node in enumerate(registry.nodes, start=1)
        ]
        return _json(nodes)

    async def node_add(self, request: Request) -> Response:
        body = await _body(request)
        body = body or {}
        hostname, port, token = body.get("hostname"), body.get("port"), body.get("token")
        if (
            not isinstance(hostname, str)
            or not isinstance(port, int | str)
            or not (token is None or isinstance(token, str))
        ):
            return _json({"error": "Invalid"})
        try:
            node = await self._registry.add(hostname, port, token or "")
        except ValueError:
            return _json({"error": "Invalid"})
        if node is None:
            return _json({"error": "A node with this hostname and port already exists"})
        log.info("Admin web: added node %s", node.name)
        return _json({"success": True})

    async def _numbered(self, request: Request) -> Node | Response:
        """The node addressed by `{"number": n}`; an empty 403 when the number is missing or 0."""
        body = await _body(request)
        number = body.get("number") if body else None
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool) or number == 0:
            return Response(status_code=403)
        node = self._registry.by_number(number)
        return node if node is not None else _json(False)

    async def node_lock(self, request: Request) -> Response:
        node = await self._numbered(request)
        if isinstance(node, Response):
            return node
        await self._registry.lock(node)
        return _json(True)

    async def node_unlock(self, request: Request) -> Response:
        node = await self._numbered(request)
        if isinstance(node, Response):
            return node
        await self._registry.unlock(node)
        return _json(True)

    async def node_delete(self, request: Request) -> Response:
        node = await self._numbered(request)
        if isinstance(node, Response):
            return node
        return _json(await self._remove_node(node, "removed from the admin web"))

    async def task_list(self, request: Request) -> Response:
        return _json(await self._board.rows())

    async def replica_list(self, request: Request) -> Response:
        return _json([replica_public(r) for r in await self._replica.current()])

    async def queue_list(self, request: Request) -> Response:
        """The proxy's task queue (`QUEUE LIST` as JSON): given a node first, then waiting by position."""
        registry = self._registry
        now = registry.now()
        queue = await self._store.load_queue()
        rows = [queue_public(p, t, now, node) for p, t, node in queue_order(queue, registry.get)]
        return _json(rows)

    # -- charts and the task detail view -------------------------------------------------------

    async def history(self, request: Request) -> Response:
        return _json(self._history.series())

    async def task_detail(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        try:
            return _json(await self._details.detail(uuid))
        except TaskNotFound:
            return _json({"error": f"No task {uuid} is known to this cluster"}, 404)

    async def task_output(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        raw = request.query_params.get("line", "0")
        if not raw.isdigit():
            return _json({"error": f"line must be a number of lines (0 or more), not {raw!r}"}, 400)
        try:
            return _json(await self._details.follow(uuid, int(raw)))
        except TaskNotFound:
            return _json({"error": f"No task {uuid} is known to this cluster"}, 404)


class MetricsEndpoint:
    """An ASGI app as a route endpoint (Starlette would take a plain function for a request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """A change the database could not take (it does not answer): 503 with the reason; nothing changed."""
    return _json({"error": UNAVAILABLE}, 503)


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def signout(request: Request) -> Response:
    # No WWW-Authenticate: the browser drops the cached credentials instead of prompting again.
    return HTMLResponse(SIGNED_OUT_PAGE, status_code=401)


def create_admin_app(api: AdminApi, metrics: Metrics, password: str) -> Starlette:
    """The page, the `/r/` API and `/metrics` (when `metrics` is on), behind `password` if any."""
    routes = [
        Route("/", index),
        Route("/signout", signout),
        Route("/r/info", api.info),
        Route("/r/node/list", api.node_list),
        Route("/r/replica/list", api.replica_list),
        Route("/r/queue/list", api.queue_list),
        Route("/r/node/add", api.node_add, methods=["POST"]),
        Route("/r/node/lock", api.node_lock, methods=["POST"]),
        Route("/r/node/unlock", api.node_unlock, methods=["POST"]),
        Route("/r/node", api.node_delete, methods=["DELETE"]),
        Route("/r/task/list", api.task_list),
        Route("/r/history", api.history),
        Route("/r/task/{uuid}", api.task_detail),
        Route("/r/task/{uuid}/output", api.task_output),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if metrics.enabled:  # Prometheus, behind the same guard as the page
        routes.append(Route("/metrics", MetricsEndpoint(metrics.asgi_app()), methods=["GET"]))
    middleware = [Middleware(AdminGuard, password=password)]
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={StoreUnavailable: store_unavailable}
    )
