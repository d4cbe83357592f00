"""SqliteStore: round trips, reopen after an unclean stop, schema versioning."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clusterodm.cluster.store import SCHEMA_VERSION, SqliteStore, TaskRecord


def test_nodes_round_trip_and_stable_ids(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    dm = {"name": "m1", "created": 5, "maxRuntime": -1, "maxUploadTime": 60}
    a = store.insert_node("a.example", 3000, "tok", False, None, 0)
    b = store.insert_node("b.example", 3001, "", True, dm, 1)
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_node("a.example", 3000, "", False, None, 2)
    store.delete_node(a)
    c = store.insert_node("c.example", 3002, "", False, None, 2)
    assert c not in (a, b)  # ids are never reused, so stale references cannot alias a new node
    store.close()

    reopened = SqliteStore(tmp_path / "db.sqlite3")
    records = reopened.load_nodes()
    assert [(r.id, r.hostname, r.port, r.locked, r.docker_machine) for r in records] == [
        (b, "b.example", 3001, True, dm),
        (c, "c.example", 3002, False, None),
    ]


def test_delete_node_drops_its_routes_atomically(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    n1 = store.insert_node("a", 1, "", False, None, 0)
    n2 = store.insert_node("b", 2, "", False, None, 1)
    store.put_routes([("u1", n1, 0, 10), ("u2", n2, 0, 10), ("u3", n1, 3, 11)])
    assert sorted(store.delete_node(n1)) == ["u1", "u3"]
    assert store.load_routes() == [("u2", n2, 0, 10)]


def test_owner_ids_hash_only(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    assert store.owner_id(b"x" * 32, create=False) is None
    first = store.owner_id(b"x" * 32, create=True)
    assert first is not None and first >= 1
    assert store.owner_id(b"x" * 32, create=False) == first
    assert store.owner_id(b"y" * 32, create=True) != first


def test_tasks_and_touch_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    info = {"uuid": "t1", "status": {"code": 20}, "options": [{"name": "dsm", "value": True}]}
    store.put_tasks([TaskRecord("t1", 4, info, ["a", "b"], 100, 100)])
    store.touch_tasks([("t1", 500)])
    store.put_routes([("r1", 1, 0, 1)])
    store.touch_routes([("r1", 99)])
    store.close()
    store = SqliteStore(path)
    (task,) = store.load_tasks()
    assert (task.uuid, task.owner_id, task.info, task.output, task.accessed_ms) == (
        "t1",
        4,
        info,
        ["a", "b"],
        500,
    )
    assert store.get_route("r1") == ("r1", 1, 0, 99)
    store.delete_tasks(["t1"])
    assert store.load_tasks() == []


def test_committed_writes_survive_a_killed_process(tmp_path: Path) -> None:
    """A process killed without closing its connection loses nothing it committed."""
    path = tmp_path / "db.sqlite3"
    script = (
        "import os, sys\n"
        "from clusterodm.cluster.store import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "s.insert_node('h', 3000, 't', False, None, 0)\n"
        "s.put_routes([('u%d' % i, 1, 0, i) for i in range(100)])\n"
        "os._exit(0)  # no close, no checkpoint\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=30)
    store = SqliteStore(path)
    assert len(store.load_routes()) == 100
    assert [r.hostname for r in store.load_nodes()] == ["h"]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_schema_version_is_recorded_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(path)


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    store.put_routes([("keep", 1, 0, 1)])
    with pytest.raises(sqlite3.ProgrammingError):
        store.put_routes([("new", 1, 0, 1), ("bad", object(), 0, 1)])  # type: ignore[list-item]
    assert store.load_routes() == [("keep", 1, 0, 1)]
