"""`/task/{uuid}/{action}`: the S3 shortcut, the routed streaming proxy, or the local task table.

This is the hot path (WebODM polls `info` every few seconds per task), so it runs as plain ASGI
code called by `ProxyFront`, without Starlette's request objects or routing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from clusterodm.cluster.actions import no_task_entry, no_valid_route
from clusterodm.proxy.forward import Receive, Scope, Send, forward, send_json
from clusterodm.proxy.query import node_query, query_value
from clusterodm.proxy.upstream import Upstream

if TYPE_CHECKING:
    from clusterodm.services import Cluster

_SMALL_ACTIONS = frozenset({"info", "output"})
"""Actions whose answers are small JSON documents (read whole instead of streamed)."""
_TASK_PATH = re.compile(r"/task/(\w+-\w+-\w+-\w+-\w+)/(.+)", re.ASCII | re.DOTALL)


def match_task_path(path: str) -> tuple[str, str] | None:
    """(uuid, action) of a task-scoped path (ClusterODM's uuid rule: five `\\w+` groups)."""
    match = _TASK_PATH.fullmatch(path)
    return None if match is None else (match[1], match[2])


class TaskRoute:
    def __init__(self, cluster: Cluster, upstream: Upstream) -> None:
        self._cluster = cluster
        self._upstream = upstream

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, uuid: str, action: str, token: str
    ) -> None:
        cluster = self._cluster
        if cluster.s3 is not None and action.startswith("download/"):
            response = await cluster.s3.download_response(uuid, action[len("download/") :])
            await response(scope, receive, send)
            return
        node = cluster.actions.node_for(uuid, token)
        if node is not None:
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
            query = node_query(scope["query_string"], node.token)
            target = f"{path}?{query}" if query else path
            small = action in _SMALL_ACTIONS and scope["method"] == "GET"
            await forward(
                scope,
                receive,
                send,
                self._upstream,
                node.base_url,
                target,
                node.name,
                small=small,
                streams=cluster.streams,
            )
            return
        actions = cluster.actions
        if action == "info":
            view = actions.local_info(uuid, token, query_value(scope["query_string"], "with_output"))
            if view is not None:
                await send_json(send, view)
                return
        elif action == "output":
            lines = actions.local_output(uuid, token, query_value(scope["query_string"], "line"))
            if lines is not None:
                await send_json(send, lines)
                return
        elif actions.has_local(uuid, token):
            await send_json(send, {"error": no_valid_route(uuid, action)})
            return
        await send_json(send, {"error": no_task_entry(uuid, action)})
