"""The simulator's ASGI application: Express-matched route table, Express-style 404s, CORS, ETags, latency."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from clusterodm.sim import routes_create as create
from clusterodm.sim import routes_tasks as tasks
from clusterodm.sim.config import SimConfig
from clusterodm.sim.router import ExpressRoute, raw_pathname
from clusterodm.sim.state import SimState
from clusterodm.sim.wire import CorsLatencyMiddleware, express_not_found, guarded

log = logging.getLogger("clusterodm.sim")

INDEX_HTML = (
    "<!DOCTYPE html><html><head><title>NodeODM</title></head><body><h1>NodeODM (simulated)</h1></body></html>"
)


async def index(request: Request) -> Response:
    return HTMLResponse(INDEX_HTML)


def _routes() -> list[BaseRoute]:
    def get(path: str, handler: Any, auth: bool = True) -> BaseRoute:
        return ExpressRoute(path, guarded(handler, auth=auth), methods=["GET"])

    def post(path: str, handler: Any, auth: bool = True) -> BaseRoute:
        return ExpressRoute(path, guarded(handler, auth=auth), methods=["POST"])

    return [
        ExpressRoute("/", index, methods=["GET"]),
        get("/info", tasks.node_info),
        get("/options", tasks.node_options),
        get("/auth/info", tasks.auth_info, auth=False),
        post("/auth/login", tasks.auth_unavailable, auth=False),
        post("/auth/register", tasks.auth_unavailable, auth=False),
        post("/task/new/init", create.init),
        post("/task/new/upload/:uuid", create.upload),
        post("/task/new/commit/:uuid", create.commit),
        post("/task/new", create.new_single_shot),
        get("/task/list", tasks.task_list),
        get("/task/:uuid/info", tasks.task_info),
        get("/task/:uuid/output", tasks.task_output),
        get("/task/:uuid/download/:asset", tasks.task_download),
        post("/task/cancel", tasks.task_cancel),
        post("/task/remove", tasks.task_remove),
        post("/task/restart", tasks.task_restart),
        # Simulator only (NodeODM has no such route): how a task's uploads were split into requests.
        get("/_sim/uploads/:uuid", create.upload_log, auth=False),
        # Simulator only: the most tasks held (queued or running) and run at once, for slot tests.
        get("/_sim/load", create.load_log, auth=False),
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    # Express answers unknown paths and wrong methods alike with its 404 page.
    if isinstance(exc, HTTPException) and exc.status_code not in (404, 405):
        return Response(str(exc.detail), status_code=exc.status_code)
    return express_not_found(request.method, raw_pathname(request.scope))


def create_app(config: SimConfig) -> Starlette:
    """Build the app; the node state lives in ``app.state.sim`` for the lifetime of the app."""
    state = SimState.create(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(CorsLatencyMiddleware, latency_ms=config.latency_ms)],
        exception_handlers={HTTPException: _not_found},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.sim = state
    return app
