"""What other replicas change, applied to this process's caches (PostgreSQL replicas only).

The store hears the changes (`Store.listen`); this hands node changes to the registry, which
reads the list again, and route and owner changes to the route index. After a reconnection both
read everything again, since notices sent meanwhile are lost.
"""

from __future__ import annotations

from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.store import RouteRecord


class SharedState:
    """The `ChangeListener` of one process: keeps its registry and route table in step."""

    def __init__(self, registry: NodeRegistry, routes: RouteIndex) -> None:
        self._registry = registry
        self._routes = routes

    async def nodes_changed(self) -> None:
        await self._registry.reload()

    def routes_added(self, records: list[RouteRecord]) -> None:
        self._routes.routes_added(records)

    def routes_removed(self, uuids: list[str]) -> None:
        self._routes.routes_removed(uuids)

    def owner_added(self, token_digest: bytes, owner_id: int) -> None:
        self._routes.owner_added(token_digest, owner_id)

    async def resync(self) -> None:
        await self._registry.reload()  # nodes first: routes of unknown nodes are not cached
        await self._routes.resync()
