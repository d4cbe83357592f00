"""The NodeODM API on :3000: `ProxyFront` (raw ASGI) in front of a Starlette app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from clusterodm.proxy import routes_node, routes_tasks
from clusterodm.proxy.front import ProxyFront
from clusterodm.proxy.responses import json_error
from clusterodm.proxy.upstream import Upstream, make_upstream

if TYPE_CHECKING:
    from clusterodm.services import Cluster


async def cannot_handle(request: Request) -> Response:
    return json_error(f"Cannot handle {request.url.path}")


def create_app(cluster: Cluster, upstream: Upstream | None = None) -> ProxyFront:
    """Routes mounted after the token check see `request.state.token` and `request.state.limits`."""
    from clusterodm.autoscale import api as autoscale_api
    from clusterodm.pipeline import api as pipeline_api

    public = Router(routes=[*autoscale_api.routes(cluster), Route("/{path:path}", cannot_handle)])
    app = Starlette(
        routes=[
            *routes_node.routes(cluster),
            *routes_tasks.routes(cluster),
            *pipeline_api.routes(cluster),
            Route("/{path:path}", cannot_handle, methods=routes_node.ALL_METHODS),
        ]
    )
    return ProxyFront(cluster, upstream or make_upstream(), public, app)
