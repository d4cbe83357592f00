"""Slot claims kept in memory: the `Store`'s slot methods for a single process (SQLite).

A claim says "task `uuid` is on its way to (or was just handed to) node `node_id`" and counts
against that node's free slots until a poll of the node sees the task in its own queue count.
With one process nothing else claims, so the claims need no disk and no lock: a dict is the
whole truth, and the SQLite path stays as fast as it was. `store_pg` keeps the same claims in
tables, checked under a per-node lock, so replicas forwarding at once share one count.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

NodeLoad = tuple[int, int]
"""(maxParallelTasks, taskQueueCount) of a node as one of its polls saw it."""

STALE_CLAIM_MS = 10_000
"""A claim still in transit this long after it was taken, by a replica that is not alive, is dropped."""


@dataclass(slots=True)
class Claim:
    node_id: int
    replica_id: str
    since_ms: int
    placed_ms: int | None = None
    """When the node committed the task (then only a later poll of the node releases the claim)."""


def free_of(load: NodeLoad, claims: int) -> int:
    """Free slots of a node with `load` and `claims` claims on it (never negative)."""
    return max(0, load[0] - load[1] - claims)


class MemorySlotClaims:
    """The `Store`'s slot-claim methods on plain dicts (one process, one event loop)."""

    def __init__(self) -> None:
        self._claims: dict[str, Claim] = {}
        self._loads: dict[int, tuple[NodeLoad, int]] = {}
        """Per node: its load and the start (`clock_ms`) of the poll that saw it."""
        self._last_ms = 0

    async def clock_ms(self) -> int:
        # Strictly increasing, so "placed before this poll started" is never a tie.
        self._last_ms = max(self._last_ms + 1, int(time.monotonic() * 1000))
        return self._last_ms

    async def claim_slot(
        self, uuid: str, node_id: int, replica_id: str, seen: NodeLoad, *, force: bool = False
    ) -> bool:
        held = self._claims.get(uuid)
        if held is not None and held.node_id == node_id:
            return True
        if not force:
            load = self._loads[node_id][0] if node_id in self._loads else seen
            others = sum(1 for u, c in self._claims.items() if c.node_id == node_id and u != uuid)
            if free_of(load, others) <= 0:
                return False
        self._claims[uuid] = Claim(node_id, replica_id, await self.clock_ms())
        return True

    async def place_slot(self, uuid: str) -> None:
        claim = self._claims.get(uuid)
        if claim is not None and claim.placed_ms is None:
            claim.placed_ms = await self.clock_ms()

    async def release_slot(self, uuid: str, node_id: int | None = None) -> None:
        claim = self._claims.get(uuid)
        if claim is not None and (node_id is None or claim.node_id == node_id):
            del self._claims[uuid]

    async def node_seen(self, node_id: int, load: NodeLoad, poll_started_ms: int) -> None:
        known = self._loads.get(node_id)
        if known is None or known[1] <= poll_started_ms:
            self._loads[node_id] = (load, poll_started_ms)
        for uuid in [
            u
            for u, c in self._claims.items()
            if c.node_id == node_id and c.placed_ms is not None and c.placed_ms < poll_started_ms
        ]:
            del self._claims[uuid]

    async def slot_claims(self) -> dict[int, int]:
        return dict(Counter(c.node_id for c in self._claims.values()))

    async def drop_stale_claims(
        self, alive_replicas: Iterable[str], older_than_ms: int = STALE_CLAIM_MS
    ) -> int:
        alive = set(alive_replicas)
        cutoff = await self.clock_ms() - older_than_ms
        stale = [
            u
            for u, c in self._claims.items()
            if c.placed_ms is None and c.replica_id not in alive and c.since_ms <= cutoff
        ]
        for uuid in stale:
            del self._claims[uuid]
        return len(stale)

    def forget_node(self, node_id: int) -> None:
        """A removed node's claims and load go with it."""
        self._loads.pop(node_id, None)
        for uuid in [u for u, c in self._claims.items() if c.node_id == node_id]:
            del self._claims[uuid]


FLOOD_DECAY_FACTOR = 0.66
"""Flood counters lose a third (floored) every decay interval, as in ClusterODM."""


def decayed(count: int, since_ms: int, now_ms: int, interval_ms: int) -> tuple[int, int]:
    """A flood counter last decayed at `since_ms`, decayed up to `now_ms`: (count, decayed at)."""
    steps = max(0, now_ms - since_ms) // max(1, interval_ms)
    for _ in range(min(steps, 64)):  # 0.66**64 of any count is 0
        count = int(count * FLOOD_DECAY_FACTOR)
    return count, since_ms + steps * max(1, interval_ms)


class MemoryFloodCounts:
    """The `Store`'s flood counters on a dict (one process)."""

    def __init__(self) -> None:
        self._floods: dict[str, tuple[int, int]] = {}

    async def flood_start(self, key: str, limit: int, interval_ms: int, now_ms: int) -> bool:
        count, since = decayed(*self._floods.get(key, (0, now_ms)), now_ms, interval_ms)
        if count > limit:
            self._floods[key] = (count, since)
            return False
        self._floods[key] = (count + 1, since)
        return True

    async def flood_done(self, key: str, interval_ms: int, now_ms: int) -> None:
        if key in self._floods:
            count, since = decayed(*self._floods[key], now_ms, interval_ms)
            self._floods[key] = (max(0, count - 1), since)
