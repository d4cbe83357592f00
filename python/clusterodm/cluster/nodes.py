"""The ordered node list, kept in step with the store, nodes.json and the native NodeBoard.

The store gives every node a stable integer id (the key the native route table and node
board use); nodes.json stays the operator-facing, ClusterODM-compatible list and wins at start
when present, so existing ClusterODM deployments and hand edits keep working.

On a shared store (PostgreSQL replicas) the database is the truth instead: nodes.json only seeds
an empty database and is never written, a start never removes a node, and every replica reads
the list again (`reload`) when any of them changes it, so node numbers agree everywhere.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.node import ONLINE_WINDOW_MS, DockerMachine, Node, parse_port
from clusterodm.cluster.store import DuplicateNode, NodeRecord, Store, StoreUnavailable

if TYPE_CHECKING:
    from clusterodm._native import NodeBoard

__all__ = ["DockerMachine", "Node", "NodeEvent", "NodeListener", "NodeRegistry", "DEFAULT_NODES_JSON"]

log = logging.getLogger("clusterodm.nodes")

DEFAULT_NODES_JSON = Path("data") / "nodes.json"

NodeEvent = Literal["added", "removed", "locked", "unlocked", "online", "offline"]
NodeListener = Callable[[NodeEvent, Node], None]
RouteDropper = Callable[[int], list[str]]


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is ignored when a stale temp file already exists
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        # `path` is a bind-mounted file (docker `-v ./nodes.json:...`): it cannot be replaced,
        # only rewritten in place. The SQLite store stays the crash-safe copy of the node list.
        with path.open("r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        tmp.unlink(missing_ok=True)
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def parse_nodes_json(data: bytes) -> list[tuple[str, int, str, bool, DockerMachine | None]]:
    """ClusterODM's nodes.json -> (hostname, port, token, locked, docker_machine) in file order.

    Entries that cannot be used (no hostname, bad port) are skipped with a warning; entries that
    only differ by port type ("3000" vs 3000) collapse into one.
    """
    raw = orjson.loads(data)
    if not isinstance(raw, list):
        raise ValueError("nodes.json must contain a JSON array")
    out: list[tuple[str, int, str, bool, DockerMachine | None]] = []
    seen: set[tuple[str, int]] = set()
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("hostname"), str) or not entry["hostname"]:
            log.warning("nodes.json: skipping entry without a hostname: %r", entry)
            continue
        hostname = entry["hostname"]
        try:
            port = parse_port(entry.get("port"))
        except ValueError:
            log.warning("nodes.json: skipping %s with invalid port %r", hostname, entry.get("port"))
            continue
        if (hostname, port) in seen:
            log.warning("nodes.json: %s:%d listed twice, keeping the first entry", hostname, port)
            continue
        seen.add((hostname, port))
        token = entry.get("token")
        dm_raw = entry.get("dockerMachine")
        docker_machine = None
        if isinstance(dm_raw, dict):
            try:
                docker_machine = DockerMachine.from_json(dm_raw)
            except ValueError:
                log.warning("nodes.json: ignoring malformed dockerMachine of %s:%d", hostname, port)
        out.append(
            (
                hostname,
                port,
                token if isinstance(token, str) else "",
                entry.get("locked") is True,
                docker_machine,
            )
        )
    return out


class NodeRegistry:
    """Registry-ordered nodes; every change is persisted (store + nodes.json) and mirrored to the board.

    Create with `await NodeRegistry.open(...)`, which loads the stored list and nodes.json.
    """

    def __init__(
        self,
        store: Store,
        board: NodeBoard,
        nodes_json_path: str | os.PathLike[str] | None = DEFAULT_NODES_JSON,
        *,
        clock: Clock = now_ms,
        online_window_ms: int = ONLINE_WINDOW_MS,
    ) -> None:
        self._store = store
        self.online_window_ms = online_window_ms
        self._board = board
        self._path = Path(nodes_json_path) if nodes_json_path is not None else None
        self._clock = clock
        self._nodes: list[Node] = []
        self._by_id: dict[int, Node] = {}
        self._board_online: dict[int, bool] = {}
        self._route_dropper: RouteDropper | None = None
        self._claimed: dict[int, int] = {}
        """Slot claims per node id as last counted into the board's in-transit figures."""
        self.shared = store.shared
        self._changing = asyncio.Lock()
        """Held by every change and reload, so a reload never interleaves with a change."""
        self.on_change: list[NodeListener] = []
        """Called synchronously after each change as `listener(event, node)`; errors are logged."""

    @classmethod
    async def open(
        cls,
        store: Store,
        board: NodeBoard,
        nodes_json_path: str | os.PathLike[str] | None = DEFAULT_NODES_JSON,
        *,
        clock: Clock = now_ms,
        online_window_ms: int = ONLINE_WINDOW_MS,
    ) -> NodeRegistry:
        registry = cls(store, board, nodes_json_path, clock=clock, online_window_ms=online_window_ms)
        await registry._load()
        return registry

    # -- start-up ----------------------------------------------------------------------------

    async def _load(self) -> None:
        if self.shared:
            await self._load_shared()
            return
        records = await self._store.load_nodes()
        from_file = self._read_nodes_json()
        if from_file is not None:
            records = await self._reconcile(records, from_file)
        for record in records:
            dm = DockerMachine.from_json(record.docker_machine) if record.docker_machine else None
            node = Node(record.id, record.hostname, record.port, record.token, record.locked, dm)
            node.online_window_ms = self.online_window_ms
            self._nodes.append(node)
            self._by_id[node.id] = node
            self._sync_board(node, online=False)
        await self._store.set_positions([n.id for n in self._nodes])
        self.save()

    async def _load_shared(self) -> None:
        """The database's list; nodes.json only fills an empty database (other replicas use it)."""
        records = await self._store.load_nodes()
        if not records and (from_file := self._read_nodes_json()):
            for position, (hostname, port, token, locked, dm) in enumerate(from_file):
                try:
                    dm_json = dm.to_json() if dm is not None else None
                    await self._store.insert_node(hostname, port, token, locked, dm_json, position)
                except DuplicateNode:
                    pass  # another replica seeding the same file at the same time
            log.info("Added the %d node(s) of %s to the empty database", len(from_file), self._path)
            records = await self._store.load_nodes()
        elif records and self._path is not None and self._path.exists():
            log.info(
                "Ignoring %s: the database already lists %d node(s), and it is the truth for every "
                "replica (change nodes with the admin CLI or web)",
                self._path,
                len(records),
            )
        self._apply_records(records)

    async def reload(self) -> None:
        """Read the list again from the shared store (another replica changed it)."""
        async with self._changing:
            self._apply_records(await self._store.load_nodes())

    def _apply_records(self, records: list[NodeRecord]) -> None:
        """Make the list match `records` (in their order), keeping the Node objects of known ids."""
        wanted = {r.id for r in records}
        for gone in [n for n in self._nodes if n.id not in wanted]:
            self._forget(gone)
            self._emit("removed", gone)
        events: list[tuple[NodeEvent, Node]] = []
        nodes: list[Node] = []
        for record in records:
            dm = DockerMachine.from_json(record.docker_machine) if record.docker_machine else None
            known = self._by_id.get(record.id)
            if known is None:
                node = Node(record.id, record.hostname, record.port, record.token, record.locked, dm)
                node.online_window_ms = self.online_window_ms
                self._by_id[node.id] = node
                self._sync_board(node, online=False)
                events.append(("added", node))
            else:
                node = known
                node.hostname, node.port, node.token, node.docker_machine = (
                    record.hostname,
                    record.port,
                    record.token,
                    dm,
                )
                if node.locked != record.locked:
                    node.locked = record.locked
                    self._board.set_locked(node.id, node.locked)
                    events.append(("locked" if node.locked else "unlocked", node))
            nodes.append(node)
        self._nodes = nodes
        for event, node in events:
            self._emit(event, node)

    def _forget(self, node: Node) -> None:
        """Drop a node removed elsewhere (its routes left the store with it)."""
        self._nodes.remove(node)
        del self._by_id[node.id]
        self._board_online.pop(node.id, None)
        if self._route_dropper is not None:
            self._route_dropper(node.id)
        self._board.remove(node.id)

    def _read_nodes_json(self) -> list[tuple[str, int, str, bool, DockerMachine | None]] | None:
        if self._path is None or not self._path.exists():
            return None
        try:
            return parse_nodes_json(self._path.read_bytes())
        except (ValueError, OSError) as exc:
            # Keep the operator's file for inspection; the SQLite list is used instead.
            backup = self._path.with_name(f"{self._path.name}.corrupt-{int(time.time())}")
            log.error(
                "Cannot read %s (%s); moved it to %s and kept the stored node list", self._path, exc, backup
            )
            os.replace(self._path, backup)
            return None

    async def _reconcile(
        self,
        records: list[NodeRecord],
        wanted: list[tuple[str, int, str, bool, DockerMachine | None]],
    ) -> list[NodeRecord]:
        """Make the store match nodes.json, keeping ids of nodes present in both."""
        stored = {(r.hostname, r.port): r for r in records}
        result: list[NodeRecord] = []
        for position, (hostname, port, token, locked, dm) in enumerate(wanted):
            dm_json = dm.to_json() if dm is not None else None
            old = stored.pop((hostname, port), None)
            if old is None:
                node_id = await self._store.insert_node(hostname, port, token, locked, dm_json, position)
                result.append(NodeRecord(node_id, hostname, port, token, locked, dm_json, position))
                continue
            record = NodeRecord(old.id, hostname, port, token, locked, dm_json, position)
            if record != old:
                await self._store.update_node(record)
            result.append(record)
        for gone in stored.values():
            dropped = await self._store.delete_node(gone.id)
            log.info(
                "Node %s:%d is not in nodes.json any more: removed it and %d route(s)",
                gone.hostname,
                gone.port,
                len(dropped),
            )
        return result

    # -- persistence ---------------------------------------------------------------------------

    def save(self) -> None:
        """Write nodes.json atomically (mode 0600: it holds node tokens, as in ClusterODM).

        Not on a shared store: the database is the list, a file per replica would only mislead."""
        if self._path is None or self.shared:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps([n.to_clusterodm_json() for n in self._nodes], option=orjson.OPT_INDENT_2)
        write_atomic(self._path, data)

    async def _persist(self, node: Node, position: int, *, locked: bool | None = None) -> None:
        """Write `node` (with `locked` instead of its own flag when given) before changing it here."""
        dm = node.docker_machine.to_json() if node.docker_machine is not None else None
        locked = node.locked if locked is None else locked
        await self._store.update_node(
            NodeRecord(node.id, node.hostname, node.port, node.token, locked, dm, position)
        )

    def set_route_dropper(self, dropper: RouteDropper) -> None:
        """Hook the in-memory route table so `remove` also drops routes there (set by RouteIndex)."""
        self._route_dropper = dropper

    def _emit(self, event: NodeEvent, node: Node) -> None:
        for listener in list(self.on_change):
            try:
                listener(event, node)
            except Exception:
                log.exception("Node listener %r failed on %s %s", listener, event, node.name)

    # -- queries -------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        """Snapshot of the nodes in registry order."""
        return list(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes))

    def now(self) -> int:
        """The registry's clock (ms), so callers judge online state on the same time base."""
        return self._clock()

    def get(self, node_id: int) -> Node | None:
        return self._by_id.get(node_id)

    def by_number(self, number: int) -> Node | None:
        """1-based position, as the admin CLI and web address nodes."""
        if 1 <= number <= len(self._nodes):
            return self._nodes[number - 1]
        return None

    def number_of(self, node: Node) -> int:
        """1-based position of `node` (0 when it is not registered)."""
        for i, candidate in enumerate(self._nodes, start=1):
            if candidate is node:
                return i
        return 0

    def find(self, hostname: str, port: int | str) -> Node | None:
        """Node by identity; "3000" and 3000 are the same port here."""
        try:
            wanted = parse_port(port)
        except ValueError:
            return None
        for node in self._nodes:
            if node.hostname == hostname and node.port == wanted:
                return node
        return None

    def reference_node(self, now_ms: int | None = None) -> Node | None:
        """First online node in registry order (locked nodes included): serves /options, the web UI."""
        now = self._clock() if now_ms is None else now_ms
        return next((n for n in self._nodes if n.online(now)), None)

    # -- changes -------------------------------------------------------------------------------

    async def add(
        self,
        hostname: str,
        port: int | str,
        token: str = "",
        locked: bool = False,
        docker_machine: DockerMachine | None = None,
    ) -> Node | None:
        """Append a node; None if (hostname, port) is already registered. ValueError on bad input."""
        async with self._changing:
            return await self._add(hostname, port, token, locked, docker_machine)

    async def _add(
        self,
        hostname: str,
        port: int | str,
        token: str,
        locked: bool,
        docker_machine: DockerMachine | None,
    ) -> Node | None:
        hostname = hostname.strip()
        if not hostname or any(c.isspace() or c in "/?#@" for c in hostname):
            raise ValueError(f"invalid hostname {hostname!r}")
        port_int = parse_port(port)
        if self.find(hostname, port_int) is not None:
            return None
        dm = docker_machine.to_json() if docker_machine is not None else None
        try:
            node_id = await self._store.insert_node(hostname, port_int, token, locked, dm, len(self._nodes))
        except DuplicateNode:
            return None  # added meanwhile (another caller between our check and the insert)
        node = Node(node_id, hostname, port_int, token, locked, docker_machine)
        node.online_window_ms = self.online_window_ms
        self._nodes.append(node)
        self._by_id[node_id] = node
        self._sync_board(node, online=False)
        self.save()
        self._emit("added", node)
        return node

    async def remove(self, node: Node) -> list[str]:
        """Remove a node and its routes; returns the uuids of the routes dropped."""
        async with self._changing:
            return await self._remove(node)

    async def _remove(self, node: Node) -> list[str]:
        if self._by_id.get(node.id) is not node:
            return []
        uuids = set(await self._store.delete_node(node.id))  # first: if it fails, nothing changed
        self._nodes.remove(node)
        del self._by_id[node.id]
        self._board_online.pop(node.id, None)
        if self._route_dropper is not None:
            uuids.update(self._route_dropper(node.id))
        self._board.remove(node.id)
        try:
            await self._store.set_positions([n.id for n in self._nodes])
        except StoreUnavailable:
            pass  # a gap keeps the order (positions only sort); the next change renumbers
        self.save()
        self._emit("removed", node)
        return sorted(uuids)

    async def lock(self, node: Node) -> bool:
        """Stop giving new tasks to `node` (it still serves its routes); True if it changed."""
        return await self._set_locked(node, True)

    async def unlock(self, node: Node) -> bool:
        return await self._set_locked(node, False)

    async def _set_locked(self, node: Node, locked: bool) -> bool:
        async with self._changing:
            return await self._set_locked_now(node, locked)

    async def _set_locked_now(self, node: Node, locked: bool) -> bool:
        if self._by_id.get(node.id) is not node or node.locked == locked:
            return False
        await self._persist(node, self._nodes.index(node), locked=locked)  # first: may fail
        node.locked = locked
        self._board.set_locked(node.id, locked)
        self.save()
        self._emit("locked" if locked else "unlocked", node)
        return True

    # -- health and ranking --------------------------------------------------------------------

    def apply_info(
        self, node: Node, info: dict[str, Any] | None, error: str | None, now_ms: int | None = None
    ) -> None:
        """Record a poll result: good info (error None) or a failure reason."""
        now = self._clock() if now_ms is None else now_ms
        was_online = node.online(now)
        if info is not None and error is None:
            node.info = info
            node.last_refreshed_ms = now
            node.last_error = None
            node.failing_since_ms = None
        else:
            node.last_error = error or "no /info reply"
            if node.last_refreshed_ms == 0 and node.failing_since_ms is None:
                node.failing_since_ms = now
        if node.id in self._by_id:
            self._sync_board(node, online=node.online(now))
        is_online = node.online(now)
        if is_online != was_online:
            self._emit("online" if is_online else "offline", node)

    def _sync_board(self, node: Node, *, online: bool) -> None:
        max_images, max_parallel, queue = node.board_values()
        self._board.upsert(node.id, online, node.locked, node.auto_spawned, max_images, max_parallel, queue)
        self._board_online[node.id] = online

    def _refresh_online(self) -> None:
        """Nodes whose last good poll aged out of the window are offline for ranking too."""
        now = self._clock()
        for node in self._nodes:
            online = node.online(now)
            if self._board_online.get(node.id) != online:
                self._board.set_online(node.id, online)
                self._board_online[node.id] = online

    def best(self, image_count: int) -> Node | None:
        """Best node for a task of `image_count` images, without changing round-robin turns."""
        self._refresh_online()
        node_id = self._board.best(image_count)
        return None if node_id is None else self._by_id.get(node_id)

    def choose(self, image_count: int) -> Node | None:
        """Like `best`, but the winner's turn is bumped so equal nodes take turns."""
        self._refresh_online()
        node_id = self._board.choose(image_count)
        return None if node_id is None else self._by_id.get(node_id)

    def rank(self, image_count: int) -> list[Node]:
        """All candidates for `image_count` images, best first."""
        self._refresh_online()
        return [self._by_id[i] for i in self._board.rank(image_count) if i in self._by_id]

    def free_slots(self, node: Node) -> int:
        """max(0, maxParallelTasks - taskQueueCount - forwards in transit)."""
        return self._board.free_slots(node.id)

    def in_transit(self, node: Node) -> int:
        """Forwards to `node` in progress (`begin_transit` without `end_transit` yet)."""
        return self._board.in_transit(node.id)

    def turn(self, node: Node) -> int:
        return self._board.turn(node.id)

    def begin_transit(self, node: Node) -> int:
        """A forward to `node` started: count it against its free slots until `end_transit`."""
        return self._board.add_in_transit(node.id, 1)

    def end_transit(self, node: Node) -> int:
        return self._board.add_in_transit(node.id, -1)

    def set_in_transit(self, counts: dict[int, int]) -> None:
        """Slot claims per node id, cluster-wide (`Slots`; absent = 0): counted in transit on top
        of this process's own `begin_transit` holds."""
        for node in self._nodes:
            delta = counts.get(node.id, 0) - self._claimed.get(node.id, 0)
            if delta:
                self._board.add_in_transit(node.id, delta)
            self._claimed[node.id] = counts.get(node.id, 0)

    def took_turn(self, node: Node) -> None:
        """`node` got a task: it goes to the back of the round robin, as `choose` does."""
        if node.id in self._by_id:
            top = max((self._board.turn(n.id) for n in self._nodes), default=0)
            self._board.set_turn(node.id, top + 1)
