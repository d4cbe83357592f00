"""The NodeODM API on :3000: `ProxyFront` (raw ASGI) in front of a Starlette app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.proxy import routes_node, routes_tasks
from clusterodm.proxy.forward import Receive, Scope, Send
from clusterodm.proxy.front import ProxyFront
from clusterodm.proxy.responses import json_error
from clusterodm.proxy.upstream import Upstream

if TYPE_CHECKING:
    from clusterodm.services import Cluster


class CannotHandle:
    """ClusterODM's answer to any other path and method, `{"error": "Cannot handle <path>"}`.

    An ASGI endpoint (a Starlette route then takes every method) that is also the router's
    default, for paths no route pattern matches (a newline in them): never Starlette's plain-text
    404 or 405.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await json_error(f"Cannot handle {scope['path']}")(scope, receive, send)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """A route needed the state store while it is unavailable (the store logs the outage once)."""
    return json_error(UNAVAILABLE)


def create_app(cluster: Cluster, upstream: Upstream | None = None) -> ProxyFront:
    """Routes mounted after the token check see `request.state.token` and `request.state.limits`.

    `upstream` forwards to the nodes (default: the cluster's own, which `Cluster.close` closes)."""
    from clusterodm.autoscale import api as autoscale_api
    from clusterodm.pipeline import api as pipeline_api

    cannot_handle = CannotHandle()
    webhook = autoscale_api.routes(cluster.registry, cluster.routes, cluster.autoscaler)
    public = Router(routes=[*webhook, Route("/{path:path}", cannot_handle)])
    app = Starlette(
        routes=[
            *routes_node.routes(cluster),
            *routes_tasks.routes(cluster),
            *pipeline_api.routes(cluster),
            Route("/{path:path}", cannot_handle),
        ],
        exception_handlers={StoreUnavailable: store_unavailable},
    )
    app.router.default = cannot_handle
    return ProxyFront(cluster, upstream or cluster.upstream, public, app)
