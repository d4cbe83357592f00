"""The `Store` on one SQLite file: the embedded default for a single clusterodm process.

WAL with `synchronous=NORMAL`: a committed transaction survives a process crash; a power failure
can lose the last few commits, never the file's consistency. One worker thread owns the
connection and runs every statement in submission order, so the event loop never waits on the
disk (a WAL checkpoint fsyncs) and writes keep the order they were made in. The worker hands
results back in batches (one loop wake-up for all the calls it found queued), which keeps the
loop's own cost per call low when many requests write at once.

Only one process may use a file: `exclusive=True` takes an OS lock (`flock`) on
`<file>.lock` for as long as the store is open, so a second clusterodm pointed at the same data
folder stops at once instead of splitting the brain.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from clusterodm.cluster.slotclaims import MemoryFloodCounts, MemorySlotClaims
from clusterodm.cluster.store import (
    QUEUE_COLUMNS,
    ChangeListener,
    DuplicateNode,
    NodeRecord,
    QueuedTask,
    ReplicaRecord,
    RouteRecord,
    SchemaTooNew,
    StoreError,
    StoreLocked,
    TaskRecord,
    UploadOwner,
    dumps,
)

T = TypeVar("T")

# Each entry upgrades the schema from version i to i + 1; append, never edit, so old files migrate.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids of removed nodes are never reused
        hostname TEXT NOT NULL,
        port INTEGER NOT NULL,
        token TEXT NOT NULL DEFAULT '',
        locked INTEGER NOT NULL DEFAULT 0,
        docker_machine TEXT,
        position INTEGER NOT NULL,
        UNIQUE (hostname, port)
    );
    CREATE TABLE owners (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- 0 is reserved for "no token"
        token_sha256 BLOB NOT NULL UNIQUE
    );
    CREATE TABLE routes (
        uuid TEXT PRIMARY KEY,
        node_id INTEGER NOT NULL,
        owner_id INTEGER NOT NULL,
        accessed_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX routes_node ON routes (node_id);
    CREATE TABLE tasks (
        uuid TEXT PRIMARY KEY,
        owner_id INTEGER NOT NULL,
        info TEXT NOT NULL,
        output TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        accessed_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- Routed tasks last seen queued or running (maxConcurrentTasks counts them, spec 2.6).
    CREATE TABLE active_tasks (
        uuid TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    """,
    """
    -- clusterodm processes on this database: with SQLite only ever this one (the file is locked).
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        leader INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    """
    -- Upload sessions (init until forwarded) and the replica whose disk holds their files.
    CREATE TABLE upload_sessions (
        uuid TEXT PRIMARY KEY,
        replica_id TEXT NOT NULL,
        token_sha256 BLOB NOT NULL,
        claimed_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX upload_sessions_replica ON upload_sessions (replica_id);
    """,
    """
    -- Committed tasks waiting at the proxy for a free node (issue 14), taken by tag, then seq.
    CREATE TABLE queued_tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        owner_id INTEGER NOT NULL,
        replica_id TEXT NOT NULL,
        node_files INTEGER NOT NULL,
        images INTEGER NOT NULL,
        max_concurrent INTEGER,
        enqueued_ms INTEGER NOT NULL,
        tag INTEGER NOT NULL,
        node_id INTEGER,
        started INTEGER NOT NULL DEFAULT 0
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

Job = tuple[Callable[[], Any], asyncio.Future[Any]]
Outcome = tuple[asyncio.Future[Any], bool, Any]
"""(future, succeeded, result or exception)."""


class _Worker:
    """One thread running submitted calls in order (it owns the connection)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._jobs.put((call, future))
        return future

    def stop(self) -> None:
        """Let the thread end once the calls already submitted are done."""
        self._jobs.put(None)

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            done: list[Outcome] = []
            while job is not None:
                call, future = job
                try:
                    done.append((future, True, call()))
                except BaseException as exc:  # handed to the caller, whatever it is
                    done.append((future, False, exc))
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
            by_loop: defaultdict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
            for outcome in done:
                by_loop[outcome[0].get_loop()].append(outcome)
            for loop, outcomes in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_deliver, outcomes)
            if job is None:
                return


def _deliver(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue  # the caller gave up; the call itself ran entirely (or not at all)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SqliteStore(MemorySlotClaims, MemoryFloodCounts):
    """`Store` on one SQLite connection, used only from this object's worker thread; slot claims
    stay in memory (`MemorySlotClaims`: one process has nobody to share them with)."""

    def __init__(self, path: Path) -> None:
        """Use `await SqliteStore.open(path)`: opening touches the disk."""
        MemorySlotClaims.__init__(self)
        MemoryFloodCounts.__init__(self)
        self.path = path
        self._worker = _Worker("clusterodm-sqlite")
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self.errors = 0
        """Statements that failed in SQLite (disk full, locked past the busy timeout...)."""
        self.shared = False
        """One process per file: nothing else changes the state behind this one's back."""
        self.route_reads = 0
        self.upload_owner_reads = 0
        self.available = True
        """A local file: there is no outage to wait out (a failing statement raises as it is)."""

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, exclusive: bool = False) -> SqliteStore:
        """Open (creating or migrating) the file; with `exclusive`, lock it for this process."""
        store = cls(Path(path))
        try:
            await store._run(store._open, exclusive)
        except BaseException:
            await store._run(store._close)
            store._worker.stop()
            raise
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            result: T = await self._worker.submit(functools.partial(fn, *args))
            return result
        except sqlite3.Error:
            self.errors += 1
            raise

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is closed"
        return self._db

    def _open(self, exclusive: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._lock()
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so multi-row changes are atomic.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the SQLite store {self.path}: {exc}; check --data-dir/--db"
            ) from None
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(
                f"another clusterodm uses the data folder of {self.path}; stop it, give this one "
                "another --data-dir, or use PostgreSQL (--db postgresql://...) to run replicas"
            ) from None
        self._lock_fd = fd

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} has schema version {version}, newer than this clusterodm knows "
                f"({SCHEMA_VERSION}); upgrade clusterodm or use another data folder"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction; rolled back if the body raises."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._close)
        self._worker.stop()

    async def publish_health(self, node_id: int, info: dict[str, Any] | None, error: str | None) -> None:
        return  # no other replica to tell

    async def listen(self, listener: ChangeListener) -> None:
        """Nothing to hear: this process is the only writer (the file is locked for it)."""
        return

    # -- nodes -------------------------------------------------------------------------------

    async def load_nodes(self) -> list[NodeRecord]:
        return await self._run(self._load_nodes)

    def _load_nodes(self) -> list[NodeRecord]:
        rows = self.db.execute(
            "SELECT id, hostname, port, token, locked, docker_machine, position FROM nodes "
            "ORDER BY position, id"
        ).fetchall()
        return [NodeRecord.from_row(row) for row in rows]

    async def insert_node(
        self,
        hostname: str,
        port: int,
        token: str,
        locked: bool,
        docker_machine: dict[str, Any] | None,
        position: int,
    ) -> int:
        dm = dumps(docker_machine) if docker_machine is not None else None
        return await self._run(self._insert_node, (hostname, port, token, int(locked), dm, position))

    def _insert_node(self, row: tuple[Any, ...]) -> int:
        try:
            with self._tx() as db:
                cursor = db.execute(
                    "INSERT INTO nodes (hostname, port, token, locked, docker_machine, position) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.IntegrityError:
            raise DuplicateNode(f"node {row[0]}:{row[1]} is already registered") from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def update_node(self, record: NodeRecord) -> None:
        dm = dumps(record.docker_machine) if record.docker_machine is not None else None
        row = (record.hostname, record.port, record.token, int(record.locked), dm, record.position, record.id)
        await self._run(self._update_node, row)

    def _update_node(self, row: tuple[Any, ...]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET hostname=?, port=?, token=?, locked=?, docker_machine=?, position=? "
                "WHERE id=?",
                row,
            )

    async def delete_node(self, node_id: int) -> list[str]:
        self.forget_node(node_id)
        return await self._run(self._delete_node, node_id)

    def _delete_node(self, node_id: int) -> list[str]:
        with self._tx() as db:
            uuids = [row[0] for row in db.execute("SELECT uuid FROM routes WHERE node_id=?", (node_id,))]
            db.executemany("DELETE FROM active_tasks WHERE uuid=?", ((u,) for u in uuids))
            db.execute("DELETE FROM routes WHERE node_id=?", (node_id,))
            db.execute("DELETE FROM nodes WHERE id=?", (node_id,))
        return uuids

    async def set_positions(self, node_ids: Sequence[int]) -> None:
        await self._run(self._set_positions, [(pos, nid) for pos, nid in enumerate(node_ids)])

    def _set_positions(self, rows: list[tuple[int, int]]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE nodes SET position=? WHERE id=?", rows)

    # -- owners ------------------------------------------------------------------------------

    async def load_owners(self) -> list[tuple[bytes, int]]:
        return await self._run(self._load_owners)

    def _load_owners(self) -> list[tuple[bytes, int]]:
        return [(bytes(r[0]), r[1]) for r in self.db.execute("SELECT token_sha256, id FROM owners")]

    async def owner_id(self, token_digest: bytes, *, create: bool) -> int | None:
        return await self._run(self._owner_id, token_digest, create)

    def _owner_id(self, token_digest: bytes, create: bool) -> int | None:
        row = self.db.execute("SELECT id FROM owners WHERE token_sha256=?", (token_digest,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        with self._tx() as db:
            cursor = db.execute("INSERT INTO owners (token_sha256) VALUES (?)", (token_digest,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- routes ------------------------------------------------------------------------------

    async def load_routes(self) -> list[RouteRecord]:
        return await self._run(self._fetchall, "SELECT uuid, node_id, owner_id, accessed_ms FROM routes", ())

    def _fetchall(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    async def stale_routes(self, cutoff_ms: int) -> list[str]:
        rows = await self._run(self._fetchall, "SELECT uuid FROM routes WHERE accessed_ms < ?", (cutoff_ms,))
        return [row[0] for row in rows]

    async def get_route(self, uuid: str) -> RouteRecord | None:
        self.route_reads += 1
        rows = await self._run(
            self._fetchall, "SELECT uuid, node_id, owner_id, accessed_ms FROM routes WHERE uuid=?", (uuid,)
        )
        return rows[0] if rows else None

    async def put_routes(self, records: Iterable[RouteRecord]) -> None:
        await self._run(
            self._many,
            "INSERT OR REPLACE INTO routes (uuid, node_id, owner_id, accessed_ms) VALUES (?, ?, ?, ?)",
            list(records),
        )

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._tx() as db:
            db.executemany(sql, rows)

    async def delete_routes(self, uuids: Iterable[str]) -> None:
        await self._run(self._delete_routes, [(u,) for u in uuids])

    def _delete_routes(self, keys: list[tuple[str]]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM routes WHERE uuid=?", keys)
            db.executemany("DELETE FROM active_tasks WHERE uuid=?", keys)

    async def touch_routes(self, items: Iterable[tuple[str, int]]) -> None:
        rows = [(ms, u) for u, ms in items]
        await self._run(self._many, "UPDATE routes SET accessed_ms=? WHERE uuid=?", rows)

    # -- activity of routed tasks ------------------------------------------------------------

    async def load_active(self) -> list[str]:
        return [row[0] for row in await self._run(self._fetchall, "SELECT uuid FROM active_tasks", ())]

    async def set_active(self, items: Iterable[tuple[str, bool]]) -> None:
        await self._run(self._set_active, list(items))

    def _set_active(self, items: list[tuple[str, bool]]) -> None:
        with self._tx() as db:
            for uuid, active in items:
                if active:
                    db.execute("INSERT OR IGNORE INTO active_tasks (uuid) VALUES (?)", (uuid,))
                else:
                    db.execute("DELETE FROM active_tasks WHERE uuid=?", (uuid,))

    # -- local tasks -------------------------------------------------------------------------

    async def load_tasks(self) -> list[TaskRecord]:
        rows = await self._run(
            self._fetchall, "SELECT uuid, owner_id, info, output, updated_ms, accessed_ms FROM tasks", ()
        )
        return [TaskRecord.from_row(row) for row in rows]

    async def get_task(self, uuid: str) -> TaskRecord | None:
        rows = await self._run(
            self._fetchall,
            "SELECT uuid, owner_id, info, output, updated_ms, accessed_ms FROM tasks WHERE uuid=?",
            (uuid,),
        )
        return TaskRecord.from_row(rows[0]) if rows else None

    async def put_tasks(self, records: Iterable[TaskRecord]) -> None:
        # Serialised here, on the loop thread, so the rows are a snapshot of the records as given.
        rows = [r.to_row() for r in records]
        await self._run(
            self._many,
            "INSERT OR REPLACE INTO tasks (uuid, owner_id, info, output, updated_ms, accessed_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def admit_task(self, record: TaskRecord, limit: int, skip_nodes: Sequence[int]) -> bool:
        return bool(await self._run(self._admit_task, record.to_row(), limit, list(skip_nodes)))

    def _admit_task(self, row: tuple[Any, ...], limit: int, skip_nodes: list[int]) -> bool:
        uuid, owner = row[0], row[1]
        skip = ",".join(str(int(n)) for n in skip_nodes) or "-1"
        with self._tx() as db:
            (count,) = db.execute(
                "SELECT (SELECT count(*) FROM tasks WHERE owner_id=? AND uuid<>? "  # noqa: S608 (ints)
                "AND json_extract(info, '$.status.code') = 20) + "
                "(SELECT count(*) FROM active_tasks a JOIN routes r ON r.uuid = a.uuid "
                f"WHERE r.owner_id=? AND r.node_id NOT IN ({skip}) "
                "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.uuid = a.uuid))",
                (owner, uuid, owner),
            ).fetchone()
            if count >= limit:
                return False
            db.execute(
                "INSERT OR REPLACE INTO tasks (uuid, owner_id, info, output, updated_ms, accessed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        return True

    async def set_task_info(self, uuid: str, info: dict[str, Any], updated_ms: int) -> None:
        row = (dumps(info), updated_ms, uuid)
        await self._run(self._many, "UPDATE tasks SET info=?, updated_ms=? WHERE uuid=?", [row])

    async def append_task_output(self, items: Sequence[tuple[str, list[str], int]]) -> None:
        rows = [(uuid, lines, ms) for uuid, lines, ms in items if lines]
        if rows:
            await self._run(self._append_task_output, rows)

    def _append_task_output(self, rows: list[tuple[str, list[str], int]]) -> None:
        with self._tx() as db:  # one process: read, extend and write in one transaction
            for uuid, lines, ms in rows:
                row = db.execute("SELECT output FROM tasks WHERE uuid=?", (uuid,)).fetchone()
                if row is not None:
                    output = dumps([*orjson.loads(row[0]), *lines])
                    db.execute(
                        "UPDATE tasks SET output=?, updated_ms=max(updated_ms, ?) WHERE uuid=?",
                        (output, ms, uuid),
                    )

    async def delete_tasks(self, uuids: Iterable[str]) -> None:
        await self._run(self._many, "DELETE FROM tasks WHERE uuid=?", [(u,) for u in uuids])

    async def touch_tasks(self, items: Iterable[tuple[str, int]]) -> None:
        rows = [(ms, u) for u, ms in items]
        await self._run(self._many, "UPDATE tasks SET accessed_ms=? WHERE uuid=?", rows)

    # -- the task queue ----------------------------------------------------------------------

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
        row = (uuid, owner_id, replica_id, node_files, images, max_concurrent, enqueued_ms)
        return await self._run(self._enqueue, row)

    def _enqueue(self, row: tuple[Any, ...]) -> QueuedTask:
        with self._tx() as db:
            db.execute(
                "INSERT INTO queued_tasks (uuid, owner_id, replica_id, node_files, images, max_concurrent, "
                "enqueued_ms, tag) VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE("
                "(SELECT MAX(tag) + 1 FROM queued_tasks WHERE owner_id = ? AND node_id IS NULL), "
                "(SELECT MIN(tag) FROM queued_tasks WHERE node_id IS NULL), 1))",
                (*row, row[1]),
            )
            record = db.execute(
                f"SELECT {QUEUE_COLUMNS} FROM queued_tasks WHERE uuid = ?",  # noqa: S608 (a constant)
                (row[0],),
            ).fetchone()
        return QueuedTask.from_row(record)

    async def load_queue(self) -> list[QueuedTask]:
        rows = await self._run(
            self._fetchall,
            f"SELECT {QUEUE_COLUMNS} FROM queued_tasks ORDER BY tag, seq",  # noqa: S608 (a constant)
            (),
        )
        return [QueuedTask.from_row(row) for row in rows]

    async def assign_queued(self, uuid: str, node_id: int) -> bool:
        return await self._run(
            self._changed,
            "UPDATE queued_tasks SET node_id=? WHERE uuid=? AND node_id IS NULL",
            (node_id, uuid),
        )

    def _changed(self, sql: str, args: tuple[Any, ...]) -> bool:
        with self._tx() as db:
            return db.execute(sql, args).rowcount > 0

    async def unassign_queued(self, uuid: str) -> None:
        await self._run(
            self._changed, "UPDATE queued_tasks SET node_id=NULL WHERE uuid=? AND started=0", (uuid,)
        )

    async def start_queued(self, uuid: str, replica_id: str) -> bool:
        return await self._run(
            self._changed,
            "UPDATE queued_tasks SET started=1 WHERE uuid=? AND replica_id=? AND node_id IS NOT NULL "
            "AND started=0",
            (uuid, replica_id),
        )

    async def adopt_queued(self, uuids: Iterable[str], replica_id: str) -> None:
        rows = [(replica_id, u) for u in uuids]
        await self._run(self._many, "UPDATE queued_tasks SET replica_id=? WHERE uuid=?", rows)

    async def dequeue(self, uuids: Iterable[str]) -> list[str]:
        return await self._run(self._dequeue, list(uuids))

    def _dequeue(self, uuids: list[str]) -> list[str]:
        gone = []
        with self._tx() as db:
            for uuid in uuids:
                if db.execute("DELETE FROM queued_tasks WHERE uuid=?", (uuid,)).rowcount:
                    gone.append(uuid)
        return gone

    # -- replicas ----------------------------------------------------------------------------

    async def heartbeat(self, replica_id: str, address: str, *, leader: bool) -> None:
        await self._run(self._heartbeat, replica_id, address, leader)

    def _heartbeat(self, replica_id: str, address: str, leader: bool) -> None:
        now = _wall_ms()
        with self._tx() as db:
            db.execute(
                "INSERT INTO replicas (id, address, started_ms, heartbeat_ms, leader) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET address=excluded.address, "
                "heartbeat_ms=excluded.heartbeat_ms, "
                "leader=excluded.leader",
                (replica_id, address, now, now, int(leader)),
            )
            if leader:
                db.execute("UPDATE replicas SET leader=0 WHERE leader AND id<>?", (replica_id,))

    async def load_replicas(self) -> list[ReplicaRecord]:
        rows = await self._run(
            self._fetchall,
            "SELECT id, address, started_ms, heartbeat_ms, leader FROM replicas ORDER BY started_ms, id",
            (),
        )
        now = _wall_ms()
        return [ReplicaRecord(r[0], r[1], r[2], max(0, now - r[3]), bool(r[4])) for r in rows]

    async def delete_replicas(self, replica_ids: Iterable[str]) -> None:
        await self._run(self._many, "DELETE FROM replicas WHERE id=?", [(i,) for i in replica_ids])

    # -- upload sessions ---------------------------------------------------------------------

    async def claim_upload(self, uuid: str, replica_id: str, token_sha256: bytes) -> bool:
        return await self._run(self._claim_upload, uuid, replica_id, token_sha256)

    def _claim_upload(self, uuid: str, replica_id: str, token_sha256: bytes) -> bool:
        with self._tx() as db:
            row = db.execute("SELECT replica_id FROM upload_sessions WHERE uuid=?", (uuid,)).fetchone()
            if row is not None and row[0] != replica_id:
                return False
            db.execute(
                "INSERT OR REPLACE INTO upload_sessions (uuid, replica_id, token_sha256, claimed_ms) "
                "VALUES (?, ?, ?, ?)",
                (uuid, replica_id, token_sha256, _wall_ms()),
            )
        return True

    async def adopt_uploads(self, items: Iterable[tuple[str, bytes]], replica_id: str) -> None:
        now = _wall_ms()
        rows = [(uuid, replica_id, digest, now) for uuid, digest in items]
        await self._run(
            self._many,
            "INSERT OR REPLACE INTO upload_sessions (uuid, replica_id, token_sha256, claimed_ms) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )

    async def upload_owner(self, uuid: str) -> UploadOwner | None:
        self.upload_owner_reads += 1
        rows = await self._run(
            self._fetchall,
            "SELECT u.replica_id, u.token_sha256, r.address, r.heartbeat_ms FROM upload_sessions u "
            "LEFT JOIN replicas r ON r.id = u.replica_id WHERE u.uuid=?",
            (uuid,),
        )
        if not rows:
            return None
        replica_id, digest, address, beat = rows[0]
        age = None if beat is None else max(0, _wall_ms() - beat)
        return UploadOwner(replica_id, bytes(digest), address, age)

    async def release_uploads(self, uuids: Iterable[str], replica_id: str) -> None:
        rows = [(uuid, replica_id) for uuid in uuids]
        await self._run(self._many, "DELETE FROM upload_sessions WHERE uuid=? AND replica_id=?", rows)

    async def drop_dead_uploads(self, dead_after_ms: int) -> list[tuple[str, str]]:
        return await self._run(self._drop_dead_uploads, _wall_ms() - dead_after_ms)

    def _drop_dead_uploads(self, cutoff_ms: int) -> list[tuple[str, str]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT uuid, replica_id FROM upload_sessions u WHERE claimed_ms < ? AND NOT EXISTS "
                "(SELECT 1 FROM replicas r WHERE r.id = u.replica_id AND r.heartbeat_ms >= ?)",
                (cutoff_ms, cutoff_ms),
            ).fetchall()
            db.executemany("DELETE FROM upload_sessions WHERE uuid=?", [(row[0],) for row in rows])
        return [(row[0], row[1]) for row in rows]

    def leader_lock(self) -> ProcessLock:
        return ProcessLock()


class ProcessLock:
    """Leadership on SQLite: the file is locked to this one process, so it always leads."""

    async def acquire(self) -> bool:
        return True

    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        pass


def _wall_ms() -> int:
    return int(time.time() * 1000)
