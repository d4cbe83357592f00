"""The two Starlette apps behind `ProxyFront` (raw ASGI) on the NodeODM API port (:3000): the
public one, reached before the token check, and the API routes after it. The composition root
(`services`) fills them with routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router

from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.proxy.forward import Receive, Scope, Send
from clusterodm.proxy.responses import json_error


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


def public_app(webhook: list[BaseRoute]) -> Router:
    """What answers before the token check: the autoscaler's webhook, `Cannot handle` otherwise."""
    cannot_handle = CannotHandle()
    return Router(routes=[*webhook, Route("/{path:path}", cannot_handle)])


def api_app(routes: list[BaseRoute]) -> Starlette:
    """The routes mounted after the token check (they see `request.state.token` and
    `request.state.limits`), `Cannot handle` for anything else; a route that needs the state store
    while it is unavailable answers `UNAVAILABLE`."""
    cannot_handle = CannotHandle()
    app = Starlette(
        routes=[*routes, Route("/{path:path}", cannot_handle)],
        exception_handlers={StoreUnavailable: store_unavailable},
    )
    app.router.default = cannot_handle
    return app
