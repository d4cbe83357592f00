"""Pure-Python reference of the algorithms in `clusterodm._native`, used only by tests and benches.

Written to follow the spec text (docs/nodeodm-api.md section 3) as directly as possible, not for
speed: the ranking uses a comparator like the original JavaScript, with Python's stable sort
supplying registry order on full ties.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

UNLIMITED_IMAGES = 999_999_999
TURN_RESET_ABOVE = 2_000_000_000
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

Row = tuple[int, bool, bool, bool, int | None, int, int, int, int]


def canonical_uuid(text: str) -> str:
    """Lowercase canonical form, or ValueError like the Rust parser."""
    if not isinstance(text, str) or _UUID.fullmatch(text) is None:
        raise ValueError(f"invalid task uuid {text!r}")
    return text.lower()


class ReferenceRouteTable:
    """Dict-based model of `RouteTable` with the same method names and results."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, int, int]] = {}

    def insert(self, uuid: str, node_id: int, owner_id: int, accessed_ms: int) -> None:
        self.routes[canonical_uuid(uuid)] = (node_id, owner_id, accessed_ms)

    def get(self, uuid: str, now_ms: int) -> tuple[int, int, int] | None:
        key = canonical_uuid(uuid)
        route = self.routes.get(key)
        if route is None:
            return None
        self.routes[key] = (route[0], route[1], now_ms)
        return self.routes[key]

    def peek(self, uuid: str) -> tuple[int, int, int] | None:
        return self.routes.get(canonical_uuid(uuid))

    def remove(self, uuid: str) -> bool:
        return self.routes.pop(canonical_uuid(uuid), None) is not None

    def by_node(self, node_id: int) -> list[str]:
        return [k for k, r in self.routes.items() if r[0] == node_id]

    def by_owner(self, owner_id: int) -> list[str]:
        return [k for k, r in self.routes.items() if r[1] == owner_id]

    def remove_node(self, node_id: int) -> list[str]:
        gone = self.by_node(node_id)
        for key in gone:
            del self.routes[key]
        return gone

    def expire(self, cutoff_ms: int) -> list[str]:
        gone = [k for k, r in self.routes.items() if r[2] < cutoff_ms]
        for key in gone:
            del self.routes[key]
        return gone

    def export(self) -> list[tuple[str, int, int, int]]:
        return [(k, *r) for k, r in self.routes.items()]

    def load(self, entries: list[tuple[str, int, int, int]]) -> None:
        keys = [canonical_uuid(e[0]) for e in entries]
        for key, (_, node_id, owner_id, accessed_ms) in zip(keys, entries, strict=True):
            self.routes[key] = (node_id, owner_id, accessed_ms)

    def __len__(self) -> int:
        return len(self.routes)

    def __contains__(self, uuid: object) -> bool:
        try:
            return canonical_uuid(uuid) in self.routes  # type: ignore[arg-type]
        except ValueError:
            return False


@dataclass(slots=True)
class Node:
    id: int
    online: bool
    locked: bool
    auto_spawned: bool
    max_images: int | None
    max_parallel_tasks: int
    task_queue_count: int
    in_transit: int = 0
    turn: int = 0

    @classmethod
    def from_row(cls, row: Row) -> Node:
        return cls(*row)

    def as_row(self) -> Row:
        return (
            self.id,
            self.online,
            self.locked,
            self.auto_spawned,
            self.max_images,
            self.max_parallel_tasks,
            self.task_queue_count,
            self.in_transit,
            self.turn,
        )

    @property
    def free_slots(self) -> int:
        return max(0, self.max_parallel_tasks - self.task_queue_count - self.in_transit)

    @property
    def image_limit(self) -> int:
        return self.max_images or UNLIMITED_IMAGES


def _compare(a: Node, b: Node) -> int:
    """JS-style comparator: negative when `a` ranks first, 0 on a full tie."""
    if a.image_limit != b.image_limit:
        return a.image_limit - b.image_limit
    if a.free_slots != b.free_slots:
        return b.free_slots - a.free_slots
    if a.task_queue_count != b.task_queue_count:
        return a.task_queue_count - b.task_queue_count
    return a.turn - b.turn


def candidates(nodes: list[Node], image_count: int) -> list[Node]:
    return [
        n
        for n in nodes
        if n.online
        and not n.locked
        and not n.auto_spawned
        and (not n.max_images or n.max_images >= image_count)
    ]


def rank(nodes: list[Node], image_count: int) -> list[int]:
    ordered = sorted(candidates(nodes, image_count), key=functools.cmp_to_key(_compare))
    return [n.id for n in ordered]


def best(nodes: list[Node], image_count: int) -> Node | None:
    ordered = sorted(candidates(nodes, image_count), key=functools.cmp_to_key(_compare))
    if not ordered:
        return None
    return next((n for n in ordered if n.free_slots > 0), ordered[0])


def choose(nodes: list[Node], image_count: int) -> Node | None:
    picked = best(nodes, image_count)
    if picked is None:
        return None
    max_turn = max(n.turn for n in nodes)
    if max_turn > TURN_RESET_ABOVE:
        for n in nodes:
            n.turn = 0
        max_turn = 0
    picked.turn = max_turn + 1
    return picked


def rank_rows(rows: list[Row], image_count: int) -> list[int]:
    return rank([Node.from_row(r) for r in rows], image_count)


class ReferenceBoard:
    """List-based model of `NodeBoard`."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def _find(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def upsert(
        self,
        node_id: int,
        online: bool,
        locked: bool,
        auto_spawned: bool,
        max_images: int | None,
        max_parallel_tasks: int,
        task_queue_count: int,
    ) -> None:
        try:
            node = self._find(node_id)
        except KeyError:
            node = Node(
                node_id, online, locked, auto_spawned, max_images, max_parallel_tasks, task_queue_count
            )
            self.nodes.append(node)
        node.online, node.locked, node.auto_spawned = online, locked, auto_spawned
        node.max_images, node.max_parallel_tasks, node.task_queue_count = (
            max_images,
            max_parallel_tasks,
            task_queue_count,
        )

    def remove(self, node_id: int) -> bool:
        before = len(self.nodes)
        self.nodes = [n for n in self.nodes if n.id != node_id]
        return len(self.nodes) != before

    def set_online(self, node_id: int, online: bool) -> None:
        self._find(node_id).online = online

    def set_locked(self, node_id: int, locked: bool) -> None:
        self._find(node_id).locked = locked

    def set_turn(self, node_id: int, turn: int) -> None:
        self._find(node_id).turn = turn

    def add_in_transit(self, node_id: int, delta: int) -> int:
        node = self._find(node_id)
        node.in_transit = max(0, node.in_transit + delta)
        return node.in_transit

    def best(self, image_count: int) -> int | None:
        picked = best(self.nodes, image_count)
        return None if picked is None else picked.id

    def choose(self, image_count: int) -> int | None:
        picked = choose(self.nodes, image_count)
        return None if picked is None else picked.id

    def rank(self, image_count: int) -> list[int]:
        return rank(self.nodes, image_count)

    def rows(self) -> list[Row]:
        return [n.as_row() for n in self.nodes]

    def __len__(self) -> int:
        return len(self.nodes)
