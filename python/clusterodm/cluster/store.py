"""Durable control-plane state: the records, the async `Store` contract, and opening one by URL.

ClusterODM keeps its route table in a JSON file rewritten hourly and its task table only in
memory, so a crash loses routes and a restart loses the final info of finished autoscaled tasks.
Here every change is written through to a store: SQLite for one process (the embedded default,
`store_sqlite`), PostgreSQL when several replicas share one cluster (`store_pg`). Both keep one
versioned, append-only migration list and refuse a schema newer than they know. The interface is
async so a network database never blocks the event loop; callers keep their hot indexes in memory
and only write (or read on a miss) through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from clusterodm.cluster.slotclaims import STALE_CLAIM_MS, NodeLoad

DEFAULT_FILE = "clusterodm.sqlite3"
"""The SQLite file under `--data-dir` when no `--db` is given."""

RouteRecord = tuple[str, int, int, int]
"""(uuid, node_id, owner_id, accessed_ms): the same tuple shape `RouteTable.export()` yields."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node row; `docker_machine` is the JSON object of an auto-spawned machine or None."""

    id: int
    hostname: str
    port: int
    token: str
    locked: bool
    docker_machine: dict[str, Any] | None
    position: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> NodeRecord:
        """From `SELECT id, hostname, port, token, locked, docker_machine, position` (either backend)."""
        docker_machine = orjson.loads(row[5]) if row[5] is not None else None
        return cls(row[0], row[1], row[2], row[3], bool(row[4]), docker_machine, row[6])


@dataclass(slots=True)
class TaskRecord:
    """A local task-table row (info in NodeODM's task-info shape, output as a list of lines)."""

    uuid: str
    owner_id: int
    info: dict[str, Any]
    output: list[str] = field(default_factory=list)
    updated_ms: int = 0
    accessed_ms: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> TaskRecord:
        """From `SELECT uuid, owner_id, info, output, updated_ms, accessed_ms` (either backend)."""
        return cls(row[0], row[1], orjson.loads(row[2]), orjson.loads(row[3]), row[4], row[5])

    def to_row(self) -> tuple[Any, ...]:
        """Serialised now, so the row is a snapshot of the record as it is at the call."""
        info, output = dumps(self.info), dumps(self.output)
        return (self.uuid, self.owner_id, info, output, self.updated_ms, self.accessed_ms)


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """A clusterodm process registered on the database (`replicas` table).

    Times are the database's clock, so replicas on machines whose clocks disagree still agree
    on who is alive: `heartbeat_age_ms` is how long ago (by that clock) the replica last wrote.
    """

    id: str
    address: str
    started_ms: int
    heartbeat_age_ms: int
    leader: bool


@dataclass(frozen=True, slots=True)
class UploadOwner:
    """The replica holding an upload session (its files are on that replica's disk).

    `address` and `heartbeat_age_ms` are None when the replica is no longer registered (it
    stopped, or the leader forgot it); the age is by the database's clock, as in `ReplicaRecord`.
    """

    replica_id: str
    token_sha256: bytes
    """SHA-256 of the token that opened the session: only that token's requests are sent on."""
    address: str | None
    heartbeat_age_ms: int | None


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A committed task waiting at the proxy for a node (`queued_tasks` table, issue 14).

    Order: `tag`, then `seq`. The tag is a fair-queuing round number given at `enqueue`: an
    owner's next task gets its previous one's tag + 1, an owner with nothing waiting joins the
    current round (the smallest waiting tag). So owners take turns (round-robin between tokens)
    while each owner's tasks keep their order, and the order is the same on every replica and
    after a restart. `replica_id` is the replica holding the task's files (only it can send
    them); the leader sets `node_id` when it picks the node, and that replica sets `started`
    when it begins the forward. The row is deleted when the forward ends, or the task is
    cancelled, removed or expired.
    """

    uuid: str
    owner_id: int
    replica_id: str
    node_files: int
    """Files as a node counts them against its maxImages (every file)."""
    images: int
    max_concurrent: int | None
    """The owner's `maxConcurrentTasks` at commit (None: no limit)."""
    enqueued_ms: int
    seq: int
    tag: int
    node_id: int | None = None
    started: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QueuedTask:
        """From `SELECT {QUEUE_COLUMNS}` (either backend)."""
        return cls(
            row[0], int(row[1]), row[2], int(row[3]), int(row[4]), row[5], int(row[6]), int(row[7]),
            int(row[8]), None if row[9] is None else int(row[9]), bool(row[10]),
        )  # fmt: skip

    @property
    def waiting(self) -> bool:
        """Not yet given a node."""
        return self.node_id is None


QUEUE_COLUMNS = (
    "uuid, owner_id, replica_id, node_files, images, max_concurrent, enqueued_ms, seq, tag, node_id, started"
)


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line saying what to do."""


class StoreUnavailable(StoreError):
    """The database does not answer (down, unreachable, too slow): the operation did not happen.

    Raised at once while an outage is known (no request waits on a dead database); the store
    logs the outage and its end itself, so callers answer `UNAVAILABLE` without logging."""


UNAVAILABLE = (
    "The cluster's state store (database) is unavailable, so nothing was changed; try again in a moment."
)
"""The error text clients get for a request that needs the store while it is unavailable."""


class SchemaTooNew(StoreError):
    """The database was written by a newer clusterodm (its schema version is unknown here)."""


class StoreLocked(StoreError):
    """Another clusterodm process already uses this SQLite file."""


class DuplicateNode(StoreError):
    """`insert_node` of a (hostname, port) that is already registered."""


class ChangeListener(Protocol):
    """Told of changes other processes made to a shared store (see `Store.listen`)."""

    async def nodes_changed(self) -> None:
        """Nodes were added, removed, locked, unlocked or renumbered: read the list again."""
        ...

    def routes_added(self, records: list[RouteRecord]) -> None: ...
    def routes_removed(self, uuids: list[str]) -> None: ...
    def owner_added(self, token_digest: bytes, owner_id: int) -> None: ...
    def node_polled(self, node_id: int, info: dict[str, Any] | None, error: str | None) -> None:
        """Another replica polled a node (good `info`, or the `error`)."""
        ...

    async def resync(self) -> None:
        """Notices may have been missed (the listening connection dropped): read everything again."""
        ...


class Store(Protocol):
    """What the registry, route index and task table need from persistence.

    Every method is one atomic transaction: it happens entirely or not at all. Methods taking
    several rows apply them in one round trip where the backend allows it.
    """

    errors: int
    """Failed store operations since the start (the `clusterodm_store_errors_total` metric)."""
    shared: bool
    """Other processes change this state too (PostgreSQL replicas): in-memory indexes are caches
    that must hear `listen`'s notices and ask the store on a miss."""
    route_reads: int
    """`get_route` calls since the start: route look-ups that missed the in-memory table."""
    upload_owner_reads: int
    """`upload_owner` calls since the start: which replica holds an upload session, asked by
    the upload hand-off (PostgreSQL replicas) for a uuid this replica does not know."""
    available: bool
    """False while the database is known not to answer (calls then raise `StoreUnavailable` at
    once); True again as soon as it answers. Always True on SQLite."""

    async def load_nodes(self) -> list[NodeRecord]: ...
    async def insert_node(
        self,
        hostname: str,
        port: int,
        token: str,
        locked: bool,
        docker_machine: dict[str, Any] | None,
        position: int,
    ) -> int:
        """Insert and return the new stable id (never reused); `DuplicateNode` if (hostname, port) exists."""
        ...

    async def update_node(self, record: NodeRecord) -> None: ...
    async def delete_node(self, node_id: int) -> list[str]:
        """Delete a node with its routes (and their activity); returns the removed route uuids."""
        ...

    async def set_positions(self, node_ids: Sequence[int]) -> None: ...
    async def load_owners(self) -> list[tuple[bytes, int]]:
        """Every (token SHA-256, owner id) pair."""
        ...

    async def owner_id(self, token_digest: bytes, *, create: bool) -> int | None:
        """Small integer id (>= 1) for a token's SHA-256; the token itself is never stored."""
        ...

    async def load_routes(self) -> list[RouteRecord]: ...
    async def get_route(self, uuid: str) -> RouteRecord | None: ...
    async def stale_routes(self, cutoff_ms: int) -> list[str]:
        """Routes last accessed before `cutoff_ms` (candidates for pruning)."""
        ...

    async def put_routes(self, records: Iterable[RouteRecord]) -> None: ...
    async def delete_routes(self, uuids: Iterable[str]) -> None:
        """Delete routes, and with them what was known of their tasks' activity."""
        ...

    async def touch_routes(self, items: Iterable[tuple[str, int]]) -> None: ...
    async def load_active(self) -> list[str]: ...
    async def set_active(self, items: Iterable[tuple[str, bool]]) -> None:
        """Record that routed tasks are (True) or are no longer (False) queued or running."""
        ...

    async def load_tasks(self) -> list[TaskRecord]: ...
    async def get_task(self, uuid: str) -> TaskRecord | None:
        """One task row (another replica's, on a shared store), or None."""
        ...

    async def put_tasks(self, records: Iterable[TaskRecord]) -> None: ...
    async def admit_task(self, record: TaskRecord, limit: int, skip_nodes: Sequence[int]) -> bool:
        """Insert `record` (a task being launched, status RUNNING) unless its owner already has
        `limit` tasks running cluster-wide: local rows with status RUNNING (forwards in progress,
        any replica's) and routed tasks marked active whose node is not in `skip_nodes` (nodes
        found down) and that have no local row. Atomic against other admissions of the owner."""
        ...

    async def set_task_info(self, uuid: str, info: dict[str, Any], updated_ms: int) -> None:
        """Replace a stored task's info only: the output lines other writers appended stay."""
        ...

    async def append_task_output(self, items: Sequence[tuple[str, list[str], int]]) -> None:
        """Append lines to tasks' stored output: (uuid, lines, updated_ms) each. Never rewrites the
        lines already stored, so replicas appending to one task at once lose nothing."""
        ...

    async def delete_tasks(self, uuids: Iterable[str]) -> None: ...
    async def touch_tasks(self, items: Iterable[tuple[str, int]]) -> None: ...
    async def enqueue(
        self,
        uuid: str,
        owner_id: int,
        replica_id: str,
        node_files: int,
        images: int,
        max_concurrent: int | None,
        enqueued_ms: int,
    ) -> QueuedTask:
        """Add a task at the end of its owner's line (its fair-queuing tag computed atomically)."""
        ...

    async def load_queue(self) -> list[QueuedTask]:
        """Every queued task, in dispatch order (tag, then seq); assigned ones included."""
        ...

    async def assign_queued(self, uuid: str, node_id: int) -> bool:
        """Give a waiting task its node; False if it is gone or already has one (so never twice)."""
        ...

    async def unassign_queued(self, uuid: str) -> None:
        """Put an assigned but not started task back to waiting (its node went away)."""
        ...

    async def start_queued(self, uuid: str, replica_id: str) -> bool:
        """The owning replica begins the forward of an assigned task; False unless exactly this
        call moved it from assigned to started (so one forward at most)."""
        ...

    async def adopt_queued(self, uuids: Iterable[str], replica_id: str) -> None:
        """This replica holds these tasks' files (a restart gives a replica a new id)."""
        ...

    async def dequeue(self, uuids: Iterable[str]) -> list[str]:
        """Delete queued tasks; returns the uuids that were there."""
        ...

    async def heartbeat(self, replica_id: str, address: str, *, leader: bool) -> None:
        """Register or refresh this replica (heartbeat now, by the database's clock); with
        `leader`, mark it the leader and every other replica not."""
        ...

    async def load_replicas(self) -> list[ReplicaRecord]:
        """Every registered replica, oldest start first."""
        ...

    async def delete_replicas(self, replica_ids: Iterable[str]) -> None:
        """Unregister replicas (this one at a clean shutdown, long-dead ones by the leader)."""
        ...

    async def claim_upload(self, uuid: str, replica_id: str, token_sha256: bytes) -> bool:
        """Record that `replica_id` holds the upload session `uuid`; False (nothing written) when
        another replica already holds that uuid."""
        ...

    async def adopt_uploads(self, items: Iterable[tuple[str, bytes]], replica_id: str) -> None:
        """Hold these (uuid, token SHA-256) sessions from now on, whoever held them (a restart
        found them on this replica's disk)."""
        ...

    async def upload_owner(self, uuid: str) -> UploadOwner | None:
        """Who holds the upload session `uuid` (None: no replica does)."""
        ...

    async def release_uploads(self, uuids: Iterable[str], replica_id: str) -> None:
        """Forget sessions `replica_id` held (dropped, or forwarded); another replica's are kept."""
        ...

    async def drop_dead_uploads(self, dead_after_ms: int) -> list[tuple[str, str]]:
        """Forget the sessions of replicas unregistered or silent for `dead_after_ms`, among those
        claimed at least that long ago (a replica's first heartbeat may follow its first claim);
        returns (uuid, replica id) of each."""
        ...

    def leader_lock(self) -> LeaderLock:
        """The cluster-wide lock whose holder runs the leader-only jobs (one object per replica)."""
        ...

    # Slot claims (see `slotclaims`): one count of forwards per node for every replica.

    async def clock_ms(self) -> int:
        """The store's clock (ms; PostgreSQL's server clock): orders claims against polls."""
        ...

    async def claim_slot(
        self, uuid: str, node_id: int, replica_id: str, seen: NodeLoad, *, force: bool = False
    ) -> bool:
        """Claim a slot of `node_id` for task `uuid` if the node has one free, counting every
        claim on it and its last stored load (`seen` when no poll was stored yet); atomic against
        other claims of the node. True if claimed (or `uuid` already holds a claim on this node);
        `force` claims even a full node (its queue will hold the task). A claim `uuid` held on
        another node moves here."""
        ...

    async def place_slot(self, uuid: str) -> None:
        """The node committed the task: its claim now lasts until a poll started later (which sees
        the task in the node's queue count) stores the node's load."""
        ...

    async def release_slot(self, uuid: str, node_id: int | None = None) -> None:
        """Drop `uuid`'s claim (only if it is on `node_id`, when given): the forward failed."""
        ...

    async def node_seen(self, node_id: int, load: NodeLoad, poll_started_ms: int) -> None:
        """A poll started at `poll_started_ms` (`clock_ms`) saw `load`: store it unless a poll
        started later already did, and drop the node's placed claims from before that start."""
        ...

    async def slot_claims(self) -> dict[int, int]:
        """Claims per node id (nodes without any are left out)."""
        ...

    async def flood_start(self, key: str, limit: int, interval_ms: int, now_ms: int) -> bool:
        """Count an upload started by `key` (a token's digest) unless its counter, decayed by a
        third per `interval_ms`, is already over `limit`: then False (flooding), counting nothing.
        Atomic, so replicas share one counter per token."""
        ...

    async def flood_done(self, key: str, interval_ms: int, now_ms: int) -> None:
        """An upload of `key` was committed: its counter goes down by one (not below 0)."""
        ...

    async def drop_stale_claims(
        self, alive_replicas: Iterable[str], older_than_ms: int = STALE_CLAIM_MS
    ) -> int:
        """Drop claims still in transit, taken over `older_than_ms` ago by replicas not in
        `alive_replicas` (they died mid-forward); returns how many went."""
        ...

    async def publish_health(self, node_id: int, info: dict[str, Any] | None, error: str | None) -> None:
        """Hand a node's poll result to the other replicas (nothing to do without any)."""
        ...

    async def listen(self, listener: ChangeListener) -> None:
        """Hand `listener` the changes other processes make, until cancelled (never returns on a
        shared store; returns at once on one nothing else writes to)."""
        ...

    async def close(self) -> None: ...


class LeaderLock(Protocol):
    """Leadership: at most one holder at a time among the replicas of one database."""

    async def acquire(self) -> bool:
        """Try to take the lock without waiting; True when this replica holds it (now or already)."""
        ...

    async def held(self) -> bool:
        """Whether the lock is still held: False once the connection that holds it is gone."""
        ...

    async def release(self) -> None:
        """Give the lock up (at shutdown); the next `acquire` may take it again."""
        ...


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def sqlite_path(url: str, data_dir: Path) -> Path | None:
    """The file of a `sqlite:` URL (None for a PostgreSQL URL); StoreError for anything else.

    `sqlite:///abs/file.sqlite3` is absolute, `sqlite:rel/file.sqlite3` relative to the working
    directory; an empty URL means `<data-dir>/clusterodm.sqlite3`.
    """
    if not url:
        return data_dir / DEFAULT_FILE
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("postgresql", "postgres"):
        return None
    if scheme != "sqlite":
        raise StoreError(
            f"--db {redact(url)}: unknown database URL; use sqlite:///path/file.sqlite3 or "
            "postgresql://user:password@host:port/dbname"
        )
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        if not rest.startswith("///") or len(rest) == 3:
            raise StoreError(
                f"--db {url}: a SQLite URL is sqlite:///absolute/path.sqlite3 or sqlite:relative/path.sqlite3"
            )
        return Path(rest[2:])
    if not rest:
        raise StoreError(f"--db {url}: name the SQLite file, e.g. sqlite:///var/lib/clusterodm/db.sqlite3")
    return Path(rest)


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


async def open_store(url: str, data_dir: Path) -> Store:
    """Open the store `--db` names (locking a SQLite file for this process); StoreError if it cannot."""
    path = sqlite_path(url, data_dir)
    if path is None:
        from clusterodm.cluster.store_pg import PostgresStore

        return await PostgresStore.open(url)
    from clusterodm.cluster.store_sqlite import SqliteStore

    return await SqliteStore.open(path, exclusive=True)
