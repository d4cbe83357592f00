"""Type stubs for the Rust extension `clusterodm._native` (task routes, node ranking, multipart)."""

from typing import Any, final

@final
class RouteTable:
    """Task UUID -> (node id, owner id, last-accessed ms), compact enough for millions of routes.

    UUIDs must be canonical ``8-4-4-4-12`` hex (any case); they are stored as 128-bit integers
    and always returned lowercase. Malformed UUIDs raise ``ValueError`` (``in`` returns False).
    Node and owner ids are the small integers handed out by the registry (owner 0 = no token).
    Lists returned by ``by_node``/``by_owner``/``remove_node``/``expire`` have no defined order.
    """

    def __init__(self) -> None: ...
    def insert(self, uuid: str, node_id: int, owner_id: int, accessed_ms: int) -> None:
        """Add a route, or replace the existing route of ``uuid``."""
    def get(self, uuid: str, now_ms: int | None = None) -> tuple[int, int, int] | None:
        """Return ``(node_id, owner_id, accessed_ms)`` after setting the access time to ``now_ms``
        (default: the current wall clock in ms), or None if there is no route."""
    def peek(self, uuid: str) -> tuple[int, int, int] | None:
        """Like ``get`` but leaves the access time alone (admin views, persistence checks)."""
    def remove(self, uuid: str) -> bool:
        """Delete a route; False if it did not exist."""
    def remove_node(self, node_id: int) -> list[str]:
        """Delete every route of a node (the node left the registry); return their UUIDs."""
    def by_node(self, node_id: int) -> list[str]:
        """UUIDs routed to ``node_id``; costs O(matches), not O(routes)."""
    def by_owner(self, owner_id: int) -> list[str]:
        """UUIDs owned by ``owner_id`` (0 = created without a token); costs O(matches)."""
    def expire(self, cutoff_ms: int) -> list[str]:
        """Delete routes whose ``accessed_ms < cutoff_ms``; return their UUIDs."""
    def export(self) -> list[tuple[str, int, int, int]]:
        """Every route as ``(uuid, node_id, owner_id, accessed_ms)``, for persistence."""
    def load(self, entries: list[tuple[str, int, int, int]]) -> None:
        """Bulk insert rows shaped like ``export()``'s. All-or-nothing: every row is validated
        (UUID syntax, integer ranges) before the first insert; later duplicates win."""
    def reserve(self, additional: int) -> None:
        """Pre-size for ``additional`` more routes (avoids rehashing during a big load)."""
    def allocated_bytes(self) -> int:
        """Bytes held by the table's main arrays (a lower bound of its memory use)."""
    def __len__(self) -> int: ...
    def __contains__(self, uuid: object) -> bool:
        """True if ``uuid`` has a route; malformed or non-string input gives False."""

@final
class NodeBoard:
    """Ranking state for the registry's nodes, updated by the health poller; ids are the
    registry's node ids, order = insertion order.

    Holding the numbers here (instead of passing every node's row on each selection) keeps a
    selection at one call with no marshalling; see ``bench/README.md`` for the comparison.
    Setters and getters raise ``KeyError`` for unknown ids.
    """

    def __init__(self) -> None: ...
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
        """Record a poll result. New ids go to the end of registry order; an existing node
        keeps its position, turn and in-transit count. ``max_images`` None or 0 = unlimited."""
    def remove(self, node_id: int) -> bool:
        """Forget a node (the others keep their order); False if unknown."""
    def set_online(self, node_id: int, online: bool) -> None: ...
    def set_locked(self, node_id: int, locked: bool) -> None: ...
    def set_turn(self, node_id: int, turn: int) -> None:
        """Override a node's turn (tests, restoring state); ``choose`` normally manages turns."""
    def add_in_transit(self, node_id: int, delta: int) -> int:
        """Count tasks being forwarded to a node (+1 before, -1 after); returns the new count,
        floored at 0."""
    def best(self, image_count: int) -> int | None:
        """The node ``choose`` would pick, without changing any turn (``NODE BEST``-style
        previews). None when no node is eligible."""
    def choose(self, image_count: int) -> int | None:
        """Pick a node for a task of ``image_count`` images and give it the highest turn
        (``max(all turns) + 1``; all turns reset to 0 first when the maximum exceeds 2e9).

        Eligible: online, unlocked, not auto-spawned, ``max_images`` unlimited or
        >= ``image_count``. Order: smallest max_images (unlimited = 999,999,999), most free
        slots (``max_parallel_tasks - task_queue_count - in_transit``, floored at 0), shortest
        queue, lowest turn, registry order. Returns the first with a free slot, else the first.
        """
    def rank(self, image_count: int) -> list[int]:
        """Every eligible node id in the order described in ``choose`` (tests, admin display)."""
    def turn(self, node_id: int) -> int: ...
    def free_slots(self, node_id: int) -> int: ...
    def in_transit(self, node_id: int) -> int: ...
    def rows(self) -> list[tuple[int, bool, bool, bool, int | None, int, int, int, int]]:
        """The board in ``rank_nodes`` row format, registry order (debugging, tests)."""
    def __len__(self) -> int: ...
    def __contains__(self, node_id: object) -> bool: ...

def rank_nodes(
    rows: list[tuple[int, bool, bool, bool, int | None, int, int, int, int]], image_count: int
) -> list[int]:
    """Stateless ranking. Rows are ``(id, online, locked, auto_spawned, max_images,
    max_parallel_tasks, task_queue_count, in_transit, turn)`` in registry order; returns the
    eligible ids best first (same order as ``NodeBoard.rank``)."""

@final
class MultipartScanner:
    """Finds the parts of a multipart/form-data body fed chunk by chunk, without copying bodies.

    ``feed`` returns ``(kind, a, b)`` tuples in body order:
    ``(HEADERS, raw_header_block, 0)`` a part starts; ``(DATA, start, end)`` body bytes
    ``chunk[start:end]`` of the chunk just fed; ``(HELD, data, 0)`` body bytes held back from an
    earlier chunk because they might have started a boundary; ``(PART_END, 0, 0)``;
    ``(DONE, 0, 0)`` the closing boundary (anything after it is ignored);
    ``(ERROR, message, 0)`` the body is malformed (bad boundary line, part headers over 16 KiB):
    it comes last, after the events of everything before the fault, and feeding more raises
    ``ValueError``.
    """

    HEADERS: int
    DATA: int
    HELD: int
    PART_END: int
    DONE: int
    ERROR: int

    def __init__(self, boundary: bytes) -> None:
        """``boundary`` as in the Content-Type parameter (1-200 bytes, else ``ValueError``)."""
    def feed(self, chunk: bytes) -> list[tuple[int, Any, int]]: ...
    @property
    def state(self) -> str:
        """Where the body stopped: ``preamble``, ``boundary``, ``headers``, ``body`` or ``done``."""
