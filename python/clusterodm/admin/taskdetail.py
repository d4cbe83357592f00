"""One task as the admin web's detail view shows it, and the new output lines for following it.

A routed task is read from its node (one task-info request with its output); what the node
answers is news of the task's status like any other and goes through `RouteIndex.observe_status`,
so the timeline and the concurrency count learn from it too. A task clusterodm holds itself
(an upload or forward in progress, a failed forward, the final state of a removed node's task)
is read from the local table without refreshing its access time: looking does not keep it alive.
Option values that are secrets never leave (`views.options_public`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from clusterodm.admin.views import options_public
from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.routing import Route
from clusterodm.cluster.tasks import LocalTask
from clusterodm.nodeodm.status import status_code

if TYPE_CHECKING:
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.tasks import TaskTable

LAST_LINES = 500
"""Output lines the detail view starts with (the end of the output; it follows from there)."""
TIMEOUT_S = 5.0


class TaskNotFound(Exception):
    pass


def _lines(output: object) -> list[str]:
    if not isinstance(output, list):
        return []
    return [line if isinstance(line, str) else str(line) for line in output]


def _number(value: object) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


class TaskDetails:
    """Reads behind `GET /r/task/{uuid}` and `GET /r/task/{uuid}/output?line=N`."""

    def __init__(
        self, routes: RouteIndex, tasks: TaskTable, registry: NodeRegistry, node_client: NodeClient
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self._registry = registry
        self._node_client = node_client

    def _local(self, uuid: str) -> LocalTask | None:
        return next((t for t in self._tasks.entries() if t.uuid == uuid), None)

    async def _node_info(self, route: Route, line: int) -> dict[str, Any]:
        """The node's task info with output from `line`; its status is news for the cluster."""
        async with asyncio.timeout(TIMEOUT_S):
            info = await self._node_client.task_info(route.node, route.uuid, with_output=line)
        self._routes.observe_status(route.uuid, status_code(info))
        return info

    async def _read(self, uuid: str, line: int) -> tuple[dict[str, Any], list[str], Route | None, str | None]:
        """(info, output lines from `line`, route, why the node could not be read)."""
        route = self._routes.peek(uuid)
        local = self._local(uuid)
        if route is not None:
            try:
                info = await self._node_info(route, line)
                return info, _lines(info.get("output")), route, None
            except NodeError as exc:
                error = exc.reason
            except TimeoutError:
                error = f"{route.node.name} did not answer within {TIMEOUT_S:g} s"
            if local is None:
                return {}, [], route, error
            return local.info, local.output[line:], route, error
        if local is None:
            raise TaskNotFound(uuid)
        return local.info, local.output[line:], None, None

    async def detail(self, uuid: str) -> dict[str, Any]:
        """Everything the detail view shows; TaskNotFound when the cluster knows no such task."""
        if uuid not in self._routes and self._local(uuid) is None:
            raise TaskNotFound(uuid)
        info, output, route, error = await self._read(uuid, 0)
        shown = output[-LAST_LINES:]
        status = info.get("status")
        registry = self._registry
        return {
            "uuid": uuid,
            "name": info.get("name") if isinstance(info.get("name"), str) else None,
            "heldBy": "node" if route is not None else "cluster",
            "node": route.node.name if route is not None else None,
            "nodeNumber": registry.number_of(route.node) if route is not None else None,
            "status": status_code(info),
            "errorMessage": status.get("errorMessage") if isinstance(status, dict) else None,
            "progress": _number(info.get("progress")),
            "imagesCount": _number(info.get("imagesCount")),
            "dateCreated": _number(info.get("dateCreated")),
            "processingTime": _number(info.get("processingTime")),
            "options": options_public(info.get("options")),
            "timeline": [
                {"at": c.at_ms, "status": c.code, "where": c.where}
                for c in self._routes.timeline.changes(uuid)
            ],
            "output": shown,
            "outputStart": len(output) - len(shown),
            "next": len(output),
            "readError": error,
        }

    async def follow(self, uuid: str, line: int) -> dict[str, Any]:
        """Output lines from `line` on, with the status and progress they came with."""
        info, output, _route, error = await self._read(uuid, max(0, line))
        return {
            "status": status_code(info),
            "progress": _number(info.get("progress")),
            "lines": output,
            "next": max(0, line) + len(output),
            "readError": error,
        }
