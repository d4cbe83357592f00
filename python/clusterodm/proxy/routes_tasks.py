"""`/task/list` and `/task/cancel|remove|restart` (spec 2.2, 2.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clusterodm.cluster.actions import NodeGone, no_route
from clusterodm.proxy.forms import BodyError, read_fields
from clusterodm.proxy.handoff import hopped
from clusterodm.proxy.responses import json_error, json_response

if TYPE_CHECKING:
    from clusterodm.cluster.actions import TaskActions
    from clusterodm.proxy.handoff import UploadHandoff


class DropResponse(Response):
    """Sent when the node refused/reset: the client sees a broken connection and retries."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from clusterodm.proxy.forward import drop_connection

        await drop_connection(send)


def routes(actions: TaskActions, handoff: UploadHandoff | None) -> list[BaseRoute]:
    """`actions` answers; `handoff` (replicas sharing a store) relays to a replica holding the upload."""

    async def task_list(request: Request) -> Response:
        return json_response(await actions.list(request.state.token))

    async def act(request: Request) -> Response:
        action = request.url.path.rsplit("/", 1)[1]
        try:
            fields = await read_fields(request)
        except BodyError as exc:
            return json_error(str(exc))
        uuid = fields.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            return json_error(f"No uuid found in {request.url.path}")
        token: str = request.state.token
        try:
            if action == "cancel":
                result = await actions.cancel(uuid, token, drop_if_gone=True)
            elif action == "remove":
                result = await actions.remove(uuid, token, drop_if_gone=True)
            else:
                result = await actions.restart(uuid, token, fields.get("options"), drop_if_gone=True)
        except NodeGone:
            return DropResponse()
        if handoff is not None and result == {"error": no_route(uuid)}:
            if not hopped(request.scope["headers"]):  # maybe an upload another replica holds
                relayed = await handoff.relay_action(action, uuid, token, request.scope["query_string"])
                result = relayed if relayed is not None else result
        return json_response(result)

    return [
        Route("/task/list", task_list, methods=["GET", "HEAD"]),
        Route("/task/cancel", act, methods=["POST"]),
        Route("/task/remove", act, methods=["POST"]),
        Route("/task/restart", act, methods=["POST"]),
    ]
