"""Each node's `/options`, cached per node: the one cache behind `/options`, task creation and restart.

Keyed by node, never by token (ClusterODM kept one list per token, filled from whichever node
answered first: spec 8.14); what a token sees is `limit_option_list` over the node's list.
"""

from __future__ import annotations

import time
from typing import Any

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient

OPTIONS_TTL_S = 600.0
"""Long enough that WebODM's `/options` and each task's checks rarely ask the node; short enough
that a node upgraded in place is seen within minutes (`/cache/clear` forgets at once)."""


class NodeOptionsCache:
    def __init__(self, node_client: NodeClient, ttl_s: float = OPTIONS_TTL_S) -> None:
        self._node_client = node_client
        self._ttl = ttl_s
        self._cache: dict[int, tuple[float, list[dict[str, Any]]]] = {}

    async def get(self, node: Node) -> list[dict[str, Any]]:
        """The node's option list (entries without a name left out); `NodeError` when it cannot
        list them."""
        hit = self._cache.get(node.id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        raw = await self._node_client.options(node)
        options = [o for o in raw if isinstance(o, dict) and "name" in o]
        self._cache[node.id] = (now, options)
        return options

    def last_known(self, node: Node) -> list[dict[str, Any]] | None:
        """The list the node gave last, however old (None if it never answered): what a task that
        waits for the node is checked against while the node cannot be asked."""
        hit = self._cache.get(node.id)
        return None if hit is None else hit[1]

    def clear(self) -> None:
        self._cache.clear()
