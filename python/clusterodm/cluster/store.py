"""Durable control-plane state in one SQLite file.

ClusterODM keeps its route table in a JSON file rewritten hourly and its task table only in
memory, so a crash loses routes and a restart loses the final info of finished autoscaled tasks.
Here every change is written through to SQLite (WAL, `synchronous=NORMAL`: a committed
transaction survives a process crash; at most the last few survive-able commits can be lost on
power failure, never the file's consistency). Statements are short, so they run synchronously
on the event loop thread that owns the connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

DEFAULT_PATH = Path("data") / "clusterodm.sqlite3"

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


@dataclass(slots=True)
class TaskRecord:
    """A local task-table row (info in NodeODM's task-info shape, output as a list of lines)."""

    uuid: str
    owner_id: int
    info: dict[str, Any]
    output: list[str] = field(default_factory=list)
    updated_ms: int = 0
    accessed_ms: int = 0


class Store(Protocol):
    """What the registry, route index and task table need from persistence (swappable for tests)."""

    def load_nodes(self) -> list[NodeRecord]: ...
    def insert_node(
        self,
        hostname: str,
        port: int,
        token: str,
        locked: bool,
        docker_machine: dict[str, Any] | None,
        position: int,
    ) -> int: ...
    def update_node(self, record: NodeRecord) -> None: ...
    def delete_node(self, node_id: int) -> list[str]: ...
    def set_positions(self, node_ids: Sequence[int]) -> None: ...
    def owner_id(self, token_digest: bytes, *, create: bool) -> int | None: ...
    def load_routes(self) -> list[RouteRecord]: ...
    def get_route(self, uuid: str) -> RouteRecord | None: ...
    def stale_routes(self, cutoff_ms: int) -> list[str]: ...
    def put_routes(self, records: Iterable[RouteRecord]) -> None: ...
    def delete_routes(self, uuids: Iterable[str]) -> None: ...
    def touch_routes(self, items: Iterable[tuple[str, int]]) -> None: ...
    def load_active(self) -> list[str]: ...
    def set_active(self, uuid: str, active: bool) -> None: ...
    def load_tasks(self) -> list[TaskRecord]: ...
    def put_tasks(self, records: Iterable[TaskRecord]) -> None: ...
    def delete_tasks(self, uuids: Iterable[str]) -> None: ...
    def touch_tasks(self, items: Iterable[tuple[str, int]]) -> None: ...
    def close(self) -> None: ...


# Each entry upgrades the schema from version i to i + 1; append, never edit, so old files migrate.
_MIGRATIONS: tuple[str, ...] = (
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
)

SCHEMA_VERSION = len(_MIGRATIONS)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqliteStore:
    """`Store` on one SQLite connection, owned by this object and used from one thread."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.errors = 0
        """Transactions that failed in SQLite (disk full, locked past the busy timeout...)."""
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so multi-row changes are atomic.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this clusterodm supports "
                f"({SCHEMA_VERSION}); upgrade clusterodm or use another data directory"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction; rolled back if the body raises. SQLite's failures are counted
        in `errors` (the `clusterodm_store_errors_total` metric)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self.errors += 1
            raise

    def close(self) -> None:
        self._db.close()

    # -- nodes -------------------------------------------------------------------------------

    def load_nodes(self) -> list[NodeRecord]:
        rows = self._db.execute(
            "SELECT id, hostname, port, token, locked, docker_machine, position FROM nodes "
            "ORDER BY position, id"
        ).fetchall()
        return [
            NodeRecord(
                id=row[0],
                hostname=row[1],
                port=row[2],
                token=row[3],
                locked=bool(row[4]),
                docker_machine=orjson.loads(row[5]) if row[5] is not None else None,
                position=row[6],
            )
            for row in rows
        ]

    def insert_node(
        self,
        hostname: str,
        port: int,
        token: str,
        locked: bool,
        docker_machine: dict[str, Any] | None,
        position: int,
    ) -> int:
        """Insert and return the new stable id; `sqlite3.IntegrityError` on a duplicate host/port."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO nodes (hostname, port, token, locked, docker_machine, position) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    hostname,
                    port,
                    token,
                    int(locked),
                    _dumps(docker_machine) if docker_machine is not None else None,
                    position,
                ),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def update_node(self, record: NodeRecord) -> None:
        dm = _dumps(record.docker_machine) if record.docker_machine is not None else None
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET hostname=?, port=?, token=?, locked=?, docker_machine=?, position=? "
                "WHERE id=?",
                (
                    record.hostname,
                    record.port,
                    record.token,
                    int(record.locked),
                    dm,
                    record.position,
                    record.id,
                ),
            )

    def delete_node(self, node_id: int) -> list[str]:
        """Delete a node and its routes in one transaction; returns the removed route uuids."""
        with self._tx() as db:
            uuids = [row[0] for row in db.execute("SELECT uuid FROM routes WHERE node_id=?", (node_id,))]
            db.executemany("DELETE FROM active_tasks WHERE uuid=?", ((u,) for u in uuids))
            db.execute("DELETE FROM routes WHERE node_id=?", (node_id,))
            db.execute("DELETE FROM nodes WHERE id=?", (node_id,))
        return uuids

    def set_positions(self, node_ids: Sequence[int]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE nodes SET position=? WHERE id=?", [(pos, nid) for pos, nid in enumerate(node_ids)]
            )

    # -- owners ------------------------------------------------------------------------------

    def owner_id(self, token_digest: bytes, *, create: bool) -> int | None:
        """Small integer id for a token's SHA-256 (the token itself is never stored)."""
        row = self._db.execute("SELECT id FROM owners WHERE token_sha256=?", (token_digest,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        with self._tx() as db:
            cursor = db.execute("INSERT INTO owners (token_sha256) VALUES (?)", (token_digest,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- routes ------------------------------------------------------------------------------

    def load_routes(self) -> list[RouteRecord]:
        return self._db.execute("SELECT uuid, node_id, owner_id, accessed_ms FROM routes").fetchall()

    def stale_routes(self, cutoff_ms: int) -> list[str]:
        """Routes last accessed before `cutoff_ms` (candidates for pruning)."""
        rows = self._db.execute("SELECT uuid FROM routes WHERE accessed_ms < ?", (cutoff_ms,)).fetchall()
        return [row[0] for row in rows]

    def get_route(self, uuid: str) -> RouteRecord | None:
        row: RouteRecord | None = self._db.execute(
            "SELECT uuid, node_id, owner_id, accessed_ms FROM routes WHERE uuid=?", (uuid,)
        ).fetchone()
        return row

    def put_routes(self, records: Iterable[RouteRecord]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO routes (uuid, node_id, owner_id, accessed_ms) VALUES (?, ?, ?, ?)",
                records,
            )

    def delete_routes(self, uuids: Iterable[str]) -> None:
        """Delete routes, and with them what was known of their tasks' activity."""
        keys = [(u,) for u in uuids]
        with self._tx() as db:
            db.executemany("DELETE FROM routes WHERE uuid=?", keys)
            db.executemany("DELETE FROM active_tasks WHERE uuid=?", keys)

    def touch_routes(self, items: Iterable[tuple[str, int]]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE routes SET accessed_ms=? WHERE uuid=?", ((ms, u) for u, ms in items))

    # -- activity of routed tasks ------------------------------------------------------------

    def load_active(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT uuid FROM active_tasks")]

    def set_active(self, uuid: str, active: bool) -> None:
        """Record that a routed task is (or is no longer) queued or running on its node."""
        with self._tx() as db:
            if active:
                db.execute("INSERT OR IGNORE INTO active_tasks (uuid) VALUES (?)", (uuid,))
            else:
                db.execute("DELETE FROM active_tasks WHERE uuid=?", (uuid,))

    # -- local tasks -------------------------------------------------------------------------

    def load_tasks(self) -> list[TaskRecord]:
        rows = self._db.execute(
            "SELECT uuid, owner_id, info, output, updated_ms, accessed_ms FROM tasks"
        ).fetchall()
        return [
            TaskRecord(
                uuid=row[0],
                owner_id=row[1],
                info=orjson.loads(row[2]),
                output=orjson.loads(row[3]),
                updated_ms=row[4],
                accessed_ms=row[5],
            )
            for row in rows
        ]

    def put_tasks(self, records: Iterable[TaskRecord]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO tasks (uuid, owner_id, info, output, updated_ms, accessed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (r.uuid, r.owner_id, _dumps(r.info), _dumps(r.output), r.updated_ms, r.accessed_ms)
                    for r in records
                ),
            )

    def delete_tasks(self, uuids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM tasks WHERE uuid=?", ((u,) for u in uuids))

    def touch_tasks(self, items: Iterable[tuple[str, int]]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE tasks SET accessed_ms=? WHERE uuid=?", ((ms, u) for u, ms in items))
