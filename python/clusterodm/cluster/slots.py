"""Free slots counted cluster-wide: which node a forward may go to, claimed before it goes.

ClusterODM counts its forwards in transit per process, so two processes forwarding at once can
both pick the last free slot of a node. Here every forward holds a claim in the store (see
`slotclaims`) from the moment its node is chosen until the forward fails, or until a poll of the
node shows the task in the node's own queue count. The store takes a claim only if the node
still has a free slot counting everyone's claims, so the ranking's choice is checked against
the whole cluster, and a replica whose view was stale just takes the next node. The native
board's in-transit counts mirror the store's claims, so the ranking and the admin's free slots
see the cluster's forwards too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.store import Store, StoreUnavailable

log = logging.getLogger("clusterodm.slots")


class Slots:
    """Claims slots of the registry's nodes for this replica's forwards."""

    def __init__(self, registry: NodeRegistry, store: Store, replica_id: str) -> None:
        self._registry = registry
        self._store = store
        self.replica_id = replica_id
        self._refreshing: asyncio.Task[None] | None = None
        self._warned = False

    async def clock_ms(self) -> int:
        """The store's clock, read before a poll asks a node (see `seen`)."""
        return await self._store.clock_ms()

    async def seen(self, node: Node, poll_started_ms: int) -> None:
        """A good poll of `node` that started at `poll_started_ms`: its load becomes what claims
        are checked against, and the tasks it counts stop being counted as claims too."""
        await self._store.node_seen(node.id, node.load(), poll_started_ms)
        await self.refresh()

    def refresh_soon(self) -> None:
        """`refresh` in the background (another replica's poll was heard), once at a time."""
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the next poll or forward reads them again
            log.debug("Cannot read the slot claims: %s", exc)

    async def refresh(self) -> dict[int, int]:
        """Read every replica's claims and show them to the ranking as forwards in transit."""
        claims = await self._store.slot_claims()
        self._registry.set_in_transit(claims)
        return claims

    async def take(self, image_count: int, uuid: str, avoid: Iterable[int] = ()) -> Node | None:
        """A node with a free slot, cluster-wide, for task `uuid` of `image_count` images (as nodes
        count them), claimed for it; None when no eligible node has one.

        Nodes are tried in the ranking's order; one whose slot another replica took meanwhile is
        skipped. The winner's round-robin turn is bumped, as the ranking's `choose` does. The
        claim lasts until `release` or, after `placed`, until the node's next poll. While the
        store does not answer, this replica's own view decides (forwards keep going).
        """
        skip = set(avoid)
        await self._quietly(self.refresh())
        for node in self._registry.rank(image_count):
            if node.id in skip or self._registry.free_slots(node) <= 0:
                continue
            if await self._claim(node, uuid, force=False):
                self._registry.took_turn(node)
                return node
            log.debug("Node %s: its last free slot went to another forward; trying the next", node.name)
        return None

    async def overflow(self, image_count: int, uuid: str, avoid: Iterable[int] = ()) -> Node | None:
        """ClusterODM's choice when no node has a free slot: the ranking's first node (its own
        queue holds the task), claimed anyway so it counts; None when no node is eligible."""
        skip = set(avoid)
        ranked = self._registry.rank(image_count)
        node = next((n for n in ranked if n.id not in skip), ranked[0] if ranked else None)
        if node is None:
            return None
        await self._claim(node, uuid, force=True)
        self._registry.took_turn(node)
        return node

    async def claim(self, node: Node, uuid: str, *, force: bool = False) -> bool:
        """Claim a slot of `node` for `uuid` (True at once if it holds one there already)."""
        return await self._claim(node, uuid, force=force)

    async def placed(self, uuid: str) -> None:
        """The node committed the task: the claim stays until the node's next poll counts it."""
        await self._quietly(self._store.place_slot(uuid))

    async def release(self, uuid: str, node: Node | None = None) -> None:
        """The forward of `uuid` (to `node`, if given) failed or was stopped: free its slot."""
        if await self._quietly(self._store.release_slot(uuid, None if node is None else node.id)):
            await self._quietly(self.refresh())

    async def _claim(self, node: Node, uuid: str, *, force: bool) -> bool:
        claimed = True  # without a store to ask, this replica's own view (the caller's) decides
        try:
            claimed = await self._store.claim_slot(uuid, node.id, self.replica_id, node.load(), force=force)
        except StoreUnavailable as exc:
            self._store_trouble(exc)
            return True
        await self._quietly(self.refresh())
        return claimed

    async def _quietly(self, call: Awaitable[object]) -> bool:
        """Run a store call; False (logged once per outage) if the store does not answer."""
        try:
            await call
        except StoreUnavailable as exc:
            self._store_trouble(exc)
            return False
        self._warned = False
        return True

    def _store_trouble(self, exc: StoreUnavailable) -> None:
        if not self._warned:
            log.warning(
                "Slot claims are not shared while the state store does not answer (%s): this replica "
                "forwards by its own count until it does",
                exc,
            )
            self._warned = True
