"""What other replicas change, applied to this process's caches (PostgreSQL replicas only).

The store hears the changes (`Store.listen`); this hands node changes to the registry, which
reads the list again, and route and owner changes to the route index. After a reconnection both
read everything again, since notices sent meanwhile are lost. Only the leader polls every node,
so each poll result is published too (`publish_polls`) and applied by the other replicas.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clusterodm.cluster.health import HealthPoller
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.slots import Slots
from clusterodm.cluster.store import RouteRecord, Store


class SharedState:
    """The `ChangeListener` of one process: keeps its registry and route table in step."""

    def __init__(self, registry: NodeRegistry, routes: RouteIndex, slots: Slots | None = None) -> None:
        self._registry = registry
        self._routes = routes
        self._slots = slots

    async def nodes_changed(self) -> None:
        await self._registry.reload()

    def routes_added(self, records: list[RouteRecord]) -> None:
        self._routes.routes_added(records)

    def routes_removed(self, uuids: list[str]) -> None:
        self._routes.routes_removed(uuids)

    def owner_added(self, token_digest: bytes, owner_id: int) -> None:
        self._routes.owner_added(token_digest, owner_id)

    def node_polled(self, node_id: int, info: dict[str, Any] | None, error: str | None) -> None:
        node = self._registry.get(node_id)
        if node is not None:
            self._registry.apply_info(node, info, error)
            if self._slots is not None:  # the poller's claims changed with it
                self._slots.refresh_soon()

    async def resync(self) -> None:
        await self._registry.reload()  # nodes first: routes of unknown nodes are not cached
        await self._routes.resync()


def publish_polls(poller: HealthPoller, store: Store) -> None:
    """Send every poll result this process gets to the other replicas (in the background)."""
    sending: set[asyncio.Task[None]] = set()

    def polled(node: Node, info: dict[str, Any] | None, error: str | None) -> None:
        task = asyncio.get_running_loop().create_task(store.publish_health(node.id, info, error))
        sending.add(task)
        task.add_done_callback(sending.discard)

    poller.on_polled = polled
