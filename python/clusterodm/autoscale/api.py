"""POST /commit: the webhook auto-spawned nodes call when a task ends.

ClusterODM accepted it from anyone (spec 8.19). Here the URL carries a secret generated for each
machine; the request is refused (401) unless it matches the machine that holds the task, so
knowing a uuid is not enough to end someone's task or destroy a machine.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clusterodm.cluster.node import Node
from clusterodm.nodeodm.status import status_code
from clusterodm.proxy.responses import json_error, json_response

if TYPE_CHECKING:
    from clusterodm.autoscale.scaler import Autoscaler
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex

log = logging.getLogger("clusterodm.autoscale.api")


def machine_for_secret(nodes: list[Node], secret: str) -> Node | None:
    """The auto-spawned node whose webhook secret is `secret` (constant-time compares, all checked)."""
    found = None
    given = secret.encode()
    for node in nodes:
        dm = node.docker_machine
        if dm is not None and dm.secret and hmac.compare_digest(dm.secret.encode(), given):
            found = node
    return found


def routes(registry: NodeRegistry, route_index: RouteIndex, autoscaler: Autoscaler | None) -> list[BaseRoute]:
    """The webhook: the machine is found in `registry`, the task's status noted in `route_index`."""

    async def commit(request: Request) -> Response:
        secret = request.query_params.get("secret", "")
        node = machine_for_secret(registry.nodes, secret) if secret else None
        if node is None:
            log.warning("Refused /commit from %s: no valid machine secret", request.client)
            return json_response({"error": "Unauthorized"}, status_code=401)
        try:
            info: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_error("Malformed /commit request")
        uuid = info.get("uuid") if isinstance(info, dict) else None
        if not isinstance(uuid, str):
            return json_error("Malformed /commit request")
        route_index.observe_status(uuid, status_code(info))
        if autoscaler is not None:
            await autoscaler.on_commit(node, uuid, info)
        log.info("Task %s finished on %s", uuid, node.name)
        return json_response({"ok": True})

    return [Route("/commit", commit, methods=["POST"])]
