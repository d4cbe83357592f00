"""The admin web's task table: local tasks plus routed tasks, with status and progress.

A browser refreshes the table every few seconds, possibly from several tabs; asking every node
about every task each time would load the nodes for nothing. So task infos are cached: the
most recently used routes are re-read when their copy is a couple of seconds old (finished
tasks much less often), at most `max_polled` per refresh, one refresh at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.routing import Route
from clusterodm.nodeodm.status import TaskStatus

if TYPE_CHECKING:
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.tasks import TaskTable

log = logging.getLogger("clusterodm.admin")

FINAL = frozenset({int(TaskStatus.FAILED), int(TaskStatus.COMPLETED), int(TaskStatus.CANCELED)})


@dataclass(slots=True)
class _Seen:
    info: dict[str, Any] | None
    error: str | None
    fetched_ms: int


def _status_code(info: dict[str, Any] | None) -> int | None:
    status = (info or {}).get("status")
    code = status.get("code") if isinstance(status, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


class TaskBoard:
    """Cached task rows for `GET /r/task/list`."""

    def __init__(
        self,
        routes: RouteIndex,
        tasks: TaskTable,
        registry: NodeRegistry,
        node_client: NodeClient,
        *,
        max_polled: int = 40,
        fresh_ms: int = 2_000,
        final_fresh_ms: int = 30_000,
        timeout_s: float = 3.0,
        max_rows: int = 200,
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self._registry = registry
        self._node_client = node_client
        self.max_polled = max_polled
        self.fresh_ms = fresh_ms
        self.final_fresh_ms = final_fresh_ms
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self._seen: dict[str, _Seen] = {}
        self._lock = asyncio.Lock()
        self._limit = asyncio.Semaphore(8)

    def _stale(self, uuid: str, now: int) -> bool:
        seen = self._seen.get(uuid)
        if seen is None:
            return True
        fresh = self.final_fresh_ms if _status_code(seen.info) in FINAL else self.fresh_ms
        return now - seen.fetched_ms >= fresh

    async def _fetch(self, route: Route) -> None:
        async with self._limit:
            info: dict[str, Any] | None = None
            error: str | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    info = await self._node_client.task_info(route.node, route.uuid)
            except NodeError as exc:
                error = exc.reason
            except TimeoutError:
                error = f"no reply within {self.timeout_s:g} s"
            if info is not None:  # news of the task like any info answer (timeline, concurrency)
                self._routes.observe_status(route.uuid, _status_code(info))
            old = self._seen.get(route.uuid)
            if info is None and old is not None:
                info = old.info  # keep showing the last known state, marked with the error
            self._seen[route.uuid] = _Seen(info, error, self._registry.now())

    async def refresh(self, routes: list[Route]) -> None:
        """Re-read the infos of the most recently used routes whose copy is stale."""
        async with self._lock:
            now = self._registry.now()
            recent = sorted(routes, key=lambda r: r.accessed_ms, reverse=True)[: self.max_polled]
            due = [r for r in recent if r.node.online(now) and self._stale(r.uuid, now)]
            if due:
                await asyncio.gather(*(self._fetch(r) for r in due))
            live = {r.uuid for r in routes}
            for uuid in [u for u in self._seen if u not in live]:
                del self._seen[uuid]

    async def rows(self) -> list[dict[str, Any]]:
        routes = self._routes.entries()
        await self.refresh(routes)
        now = self._registry.now()
        rows: dict[str, dict[str, Any]] = {}
        for task in self._tasks.entries():
            rows[task.uuid] = self._row(task.uuid, task.info, None, None, task.accessed_ms, now, "cluster")
        for route in routes:
            seen = self._seen.get(route.uuid)
            local = rows.get(route.uuid)
            info = seen.info if seen is not None and seen.info is not None else None
            if info is None and local is not None:
                local.update(node=route.node.name, nodeNumber=self._registry.number_of(route.node))
                continue
            row = self._row(route.uuid, info, route, seen, route.accessed_ms, now, "node")
            rows[route.uuid] = row
        ordered = sorted(rows.values(), key=lambda r: r["sortKey"], reverse=True)[: self.max_rows]
        for row in ordered:
            del row["sortKey"]
        return ordered

    def _row(
        self,
        uuid: str,
        info: dict[str, Any] | None,
        route: Route | None,
        seen: _Seen | None,
        accessed_ms: int,
        now: int,
        held_by: str,
    ) -> dict[str, Any]:
        info = info or {}
        status = info.get("status")
        created = _number(info.get("dateCreated"))
        images = _number(info.get("imagesCount"))
        node = route.node if route is not None else None
        return {
            "uuid": uuid,
            "name": info.get("name") if isinstance(info.get("name"), str) else None,
            "heldBy": held_by,
            "node": node.name if node is not None else None,
            "nodeNumber": self._registry.number_of(node) if node is not None else None,
            "status": _status_code(info),
            "errorMessage": status.get("errorMessage") if isinstance(status, dict) else None,
            "progress": _number(info.get("progress")),
            "imagesCount": int(images) if images is not None else None,
            "dateCreated": int(created) if created is not None else None,
            "ageMs": now - int(created) if created is not None else None,
            "processingTime": _number(info.get("processingTime")),
            "accessedMs": accessed_ms,
            "infoAgeMs": now - seen.fetched_ms if seen is not None else None,
            "pollError": seen.error if seen is not None else None,
            "sortKey": int(created) if created is not None else accessed_ms,
        }
