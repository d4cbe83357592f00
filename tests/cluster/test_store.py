"""The store contract, run against both backends (a SQLite file and a real PostgreSQL), plus
what only SQLite has: crash safety of a killed process, old files migrating, the file lock."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clusterodm.cluster import store_pg, store_sqlite
from clusterodm.cluster.store import (
    DuplicateNode,
    SchemaTooNew,
    Store,
    StoreError,
    StoreLocked,
    TaskRecord,
    UploadOwner,
    open_store,
)
from clusterodm.cluster.store_sqlite import SqliteStore
from support.aio import async_test
from support.postgres import PostgresServer

Bump = Callable[[int], None]
"""Sets the stored schema version (to test refusing a newer one)."""


class Backend:
    """How a test reaches one backend: its URL, and a way to tamper with its schema version."""

    def __init__(self, url: str, data_dir: Path, bump: Bump, version: int) -> None:
        self.url = url
        self.data_dir = data_dir
        self.bump = bump
        self.version = version

    async def open(self) -> Store:
        return await open_store(self.url, self.data_dir)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "db.sqlite3"

        def bump_sqlite(version: int) -> None:
            with sqlite3.connect(path) as db:
                db.execute(f"PRAGMA user_version = {version}")

        return Backend(f"sqlite://{path}", tmp_path, bump_sqlite, store_sqlite.SCHEMA_VERSION)
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.database()

    def bump_pg(version: int) -> None:
        server.execute(url, f"UPDATE clusterodm_schema SET version = {version}")

    return Backend(url, tmp_path, bump_pg, store_pg.SCHEMA_VERSION)


async def reopened(backend: Backend, store: Store) -> Store:
    await store.close()
    return await backend.open()


@async_test
async def test_nodes_round_trip_and_stable_ids(backend: Backend) -> None:
    store = await backend.open()
    dm = {"name": "m1", "created": 5, "maxRuntime": -1, "maxUploadTime": 60}
    a = await store.insert_node("a.example", 3000, "tok", False, None, 0)
    b = await store.insert_node("b.example", 3001, "", True, dm, 1)
    with pytest.raises(DuplicateNode, match="a.example:3000"):
        await store.insert_node("a.example", 3000, "", False, None, 2)
    await store.delete_node(a)
    c = await store.insert_node("c.example", 3002, "", False, None, 2)
    assert c not in (a, b)  # ids are never reused, so stale references cannot alias a new node
    store = await reopened(backend, store)
    records = await store.load_nodes()
    assert [(r.id, r.hostname, r.port, r.token, r.locked, r.docker_machine) for r in records] == [
        (b, "b.example", 3001, "", True, dm),
        (c, "c.example", 3002, "", False, None),
    ]
    await store.update_node(records[0].__class__(b, "b.example", 3001, "new", False, None, 5))
    await store.set_positions([c, b])
    assert [(r.id, r.token, r.locked, r.position) for r in await store.load_nodes()] == [
        (c, "", False, 0),
        (b, "new", False, 1),
    ]
    await store.close()


@async_test
async def test_delete_node_drops_its_routes_and_their_activity(backend: Backend) -> None:
    store = await backend.open()
    n1 = await store.insert_node("a", 1, "", False, None, 0)
    n2 = await store.insert_node("b", 2, "", False, None, 1)
    await store.put_routes([("u1", n1, 0, 10), ("u2", n2, 0, 10), ("u3", n1, 3, 11)])
    await store.set_active([("u1", True), ("u2", True)])
    assert sorted(await store.delete_node(n1)) == ["u1", "u3"]
    assert await store.load_routes() == [("u2", n2, 0, 10)]
    assert await store.load_active() == ["u2"]
    assert await store.delete_node(n1) == []
    await store.close()


@async_test
async def test_owner_ids_keep_only_hashes(backend: Backend) -> None:
    store = await backend.open()
    assert await store.owner_id(b"x" * 32, create=False) is None
    first = await store.owner_id(b"x" * 32, create=True)
    assert first is not None and first >= 1  # 0 stays "no token"
    assert await store.owner_id(b"x" * 32, create=False) == first
    assert await store.owner_id(b"x" * 32, create=True) == first
    second = await store.owner_id(b"y" * 32, create=True)
    assert second not in (None, first)
    store = await reopened(backend, store)
    assert sorted(await store.load_owners()) == sorted([(b"x" * 32, first), (b"y" * 32, second)])
    await store.close()


@async_test
async def test_routes_put_replace_touch_stale_delete(backend: Backend) -> None:
    store = await backend.open()
    await store.put_routes([("r1", 1, 0, 100), ("r2", 1, 2, 200), ("r3", 2, 2, 300)])
    await store.put_routes([("r2", 2, 5, 250)])  # re-routed: replaced, not duplicated
    await store.put_routes([])
    await store.touch_routes([("r1", 400), ("gone", 1)])
    assert await store.get_route("r2") == ("r2", 2, 5, 250)
    assert await store.get_route("nope") is None
    assert sorted(await store.stale_routes(300)) == ["r2"]
    await store.set_active([("r1", True), ("r3", True)])
    await store.delete_routes(["r1", "r2", "unknown"])
    await store.delete_routes([])
    store = await reopened(backend, store)
    assert await store.load_routes() == [("r3", 2, 2, 300)]
    assert await store.load_active() == ["r3"]  # the activity of a deleted route goes with it
    await store.close()


@async_test
async def test_activity_batches_apply_the_last_news(backend: Backend) -> None:
    store = await backend.open()
    await store.set_active([("a", True), ("b", True), ("a", False), ("c", True), ("c", True)])
    assert sorted(await store.load_active()) == ["b", "c"]
    await store.set_active([("b", False), ("a", True), ("unknown", False)])
    assert sorted(await store.load_active()) == ["a", "c"]
    await store.close()


@async_test
async def test_tasks_round_trip(backend: Backend) -> None:
    store = await backend.open()
    info = {"uuid": "t1", "status": {"code": 20}, "options": [{"name": "dsm", "value": True}], "z": 1.5}
    await store.put_tasks([TaskRecord("t1", 4, info, ["a", "b"], 100, 100)])
    await store.put_tasks([TaskRecord("t2", 0, {"x": None}, [], 1, 1)])
    await store.touch_tasks([("t1", 500)])
    output = ["a", "b", "ünïcode \u2713", ""]
    await store.put_tasks([TaskRecord("t2", 0, {"x": [1, "2"]}, output, 7, 8)])  # replaced whole
    store = await reopened(backend, store)
    tasks = {t.uuid: t for t in await store.load_tasks()}
    t1, t2 = tasks["t1"], tasks["t2"]
    assert (t1.owner_id, t1.info, t1.output, t1.updated_ms, t1.accessed_ms) == (4, info, ["a", "b"], 100, 500)
    assert list(t1.info) == list(info)  # key order kept (answers are NodeODM's task info, as stored)
    assert (t2.info, t2.output, t2.updated_ms, t2.accessed_ms) == ({"x": [1, "2"]}, output, 7, 8)
    await store.delete_tasks(["t1", "unknown"])
    await store.delete_tasks([])
    assert [t.uuid for t in await store.load_tasks()] == ["t2"]
    await store.close()


@async_test
async def test_queue_order_is_round_robin_between_owners_fifo_within_one(backend: Backend) -> None:
    store = await backend.open()
    for i in range(3):
        await store.enqueue(f"a{i}", 1, "r1", 5 + i, 4 + i, 2, 100 + i)
    await store.enqueue("b0", 2, "r1", 1, 1, None, 200)
    await store.enqueue("b1", 2, "r2", 1, 1, None, 201)
    await store.enqueue("c0", 3, "r2", 1, 1, None, 202)
    order = [q.uuid for q in await store.load_queue()]
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2"]
    head = (await store.load_queue())[0]
    assert (head.owner_id, head.replica_id, head.node_files, head.images, head.max_concurrent) == (
        1,
        "r1",
        5,
        4,
        2,
    )
    assert (head.enqueued_ms, head.node_id, head.started, head.waiting) == (100, None, False, True)
    # a0 leaves: a newcomer joins the current round, after those already in it
    assert await store.dequeue(["a0", "zz"]) == ["a0"]
    await store.enqueue("d0", 4, "r1", 1, 1, None, 300)
    store = await reopened(backend, store)  # the order survives a restart
    assert [q.uuid for q in await store.load_queue()] == ["b0", "c0", "d0", "a1", "b1", "a2"]
    assert await store.dequeue([]) == []
    await store.close()


@async_test
async def test_a_queued_task_is_assigned_and_started_once(backend: Backend) -> None:
    store = await backend.open()
    await store.enqueue("t", 1, "r1", 3, 3, None, 1)
    await store.enqueue("u", 1, "r1", 3, 3, None, 2)
    assert not await store.start_queued("t", "r1")  # no node yet
    results = await asyncio.gather(*(store.assign_queued("t", n) for n in (7, 8, 9)))
    assert sorted(results) == [False, False, True]  # one node wins, never two
    assigned = {q.uuid: q for q in await store.load_queue()}["t"]
    assert assigned.node_id in (7, 8, 9) and not assigned.waiting
    await store.enqueue("v", 2, "r1", 1, 1, None, 3)  # joins the round of the waiting ones (u)
    assert [q.uuid for q in await store.load_queue() if q.waiting] == ["u", "v"]
    await store.unassign_queued("t")
    assert {q.uuid: q for q in await store.load_queue()}["t"].waiting
    assert await store.assign_queued("t", 7)
    assert not await store.start_queued("t", "other replica")
    starts = await asyncio.gather(*(store.start_queued("t", "r1") for _ in range(3)))
    assert sorted(starts) == [False, False, True]
    await store.unassign_queued("t")  # started: stays with its node
    await store.adopt_queued(["t", "u", "missing"], "r9")
    rows = {q.uuid: q for q in await store.load_queue()}
    assert (rows["t"].node_id, rows["t"].started, rows["t"].replica_id) == (7, True, "r9")
    assert rows["u"].replica_id == "r9" and rows["v"].replica_id == "r1"
    await store.close()


@async_test
async def test_concurrent_enqueues_keep_one_line_per_owner(backend: Backend) -> None:
    store = await backend.open()
    await asyncio.gather(*(store.enqueue(f"t{i}", i % 2 + 1, "r", 1, 1, None, i) for i in range(20)))
    queue = await store.load_queue()
    owners = [q.owner_id for q in queue]
    assert len(queue) == 20
    assert all({owners[2 * k], owners[2 * k + 1]} == {1, 2} for k in range(10))  # one of each per round
    await store.close()


@async_test
async def test_a_failed_write_leaves_nothing_half_done(backend: Backend) -> None:
    store = await backend.open()
    await store.put_routes([("keep", 1, 0, 1)])
    with pytest.raises(Exception):  # noqa: B017 (each driver has its own error for an unusable value)
        await store.put_routes([("new", 1, 0, 1), ("bad", object(), 0, 1)])  # type: ignore[list-item]
    assert await store.load_routes() == [("keep", 1, 0, 1)]
    assert store.errors == 1  # the clusterodm_store_errors_total metric
    await store.close()


@async_test
async def test_concurrent_writes_all_land(backend: Backend) -> None:
    """Many writers at once (requests of many clients): every write is kept."""
    store = await backend.open()
    node = await store.insert_node("n", 1, "", False, None, 0)
    await asyncio.gather(*(store.put_routes([(f"u{i}", node, i % 3, i)]) for i in range(200)))
    owners = await asyncio.gather(*(store.owner_id(bytes([i % 5]) * 32, create=True) for i in range(50)))
    assert len(set(owners)) == 5  # racing creators of one owner get the same id
    assert len(await store.load_routes()) == 200
    await store.put_routes([(f"bulk{i}", node, 0, i) for i in range(5000)])
    assert len(await store.stale_routes(10**12)) == 5200
    await store.close()


@async_test
async def test_a_newer_schema_is_refused_with_one_line(backend: Backend) -> None:
    await (await backend.open()).close()
    backend.bump(backend.version + 1)
    with pytest.raises(SchemaTooNew, match="newer than this clusterodm knows") as caught:
        await backend.open()
    assert "\n" not in str(caught.value) and f"version {backend.version + 1}" in str(caught.value)
    backend.bump(backend.version)  # back to a version it knows: opens again
    await (await backend.open()).close()


@async_test
async def test_replicas_register_beat_and_one_leads(backend: Backend) -> None:
    store = await backend.open()
    assert await store.load_replicas() == []
    await store.heartbeat("a", "http://a:3000", leader=False)
    await store.heartbeat("b", "http://b:3000", leader=True)
    first = {r.id: r for r in await store.load_replicas()}
    assert set(first) == {"a", "b"} and [r.id for r in first.values() if r.leader] == ["b"]
    assert first["a"].address == "http://a:3000" and 0 <= first["a"].heartbeat_age_ms < 5000
    await asyncio.sleep(0.05)
    await store.heartbeat("a", "http://a2:3000", leader=True)  # a takes over: b no longer leads
    again = {r.id: r for r in await store.load_replicas()}
    assert [r.id for r in again.values() if r.leader] == ["a"]
    assert again["a"].address == "http://a2:3000" and again["a"].started_ms == first["a"].started_ms
    assert again["b"].heartbeat_age_ms >= 50 > again["a"].heartbeat_age_ms  # b did not beat since
    await store.delete_replicas(["b", "unknown"])
    assert [r.id for r in await store.load_replicas()] == ["a"]
    await store.close()


@async_test
async def test_upload_sessions_have_one_owner_replica(backend: Backend) -> None:
    store = await backend.open()
    mine, theirs = b"\x01" * 32, b"\x02" * 32
    assert await store.upload_owner("u1") is None
    await store.heartbeat("a", "http://a:3000", leader=False)
    assert await store.claim_upload("u1", "a", mine)
    assert await store.claim_upload("u1", "a", mine)  # a retried claim of its own session
    assert not await store.claim_upload("u1", "b", theirs)  # another replica holds it
    owner = await store.upload_owner("u1")
    assert owner is not None and (owner.replica_id, owner.token_sha256, owner.address) == (
        "a",
        mine,
        "http://a:3000",
    )
    assert owner.heartbeat_age_ms is not None and 0 <= owner.heartbeat_age_ms < 5000
    assert await store.claim_upload("u2", "b", theirs)
    assert await store.upload_owner("u2") == UploadOwner("b", theirs, None, None)  # b is not registered

    await store.release_uploads(["u1", "u2"], "b")  # b's own only
    assert await store.upload_owner("u2") is None
    again = await store.upload_owner("u1")
    assert again is not None and again.replica_id == "a"
    await store.adopt_uploads([("u1", theirs), ("u3", theirs)], "b")  # b restarted with a's files
    assert [(await store.upload_owner(u)) for u in ("u1", "u3")] == [UploadOwner("b", theirs, None, None)] * 2
    await store.release_uploads(["u1", "u3"], "b")
    assert await store.upload_owner("u1") is None
    await store.close()


@async_test
async def test_dead_replicas_uploads_are_dropped(backend: Backend) -> None:
    store = await backend.open()
    digest = b"\x03" * 32
    await store.heartbeat("alive", "http://a:3000", leader=True)
    await store.heartbeat("silent", "http://s:3000", leader=False)
    for uuid, replica in (("u-alive", "alive"), ("u-silent", "silent"), ("u-gone", "gone")):
        assert await store.claim_upload(uuid, replica, digest)
    assert await store.drop_dead_uploads(60_000) == []  # claimed just now: kept whatever the replica
    await asyncio.sleep(0.3)
    await store.heartbeat("alive", "http://a:3000", leader=True)
    assert sorted(await store.drop_dead_uploads(200)) == [("u-gone", "gone"), ("u-silent", "silent")]
    assert await store.upload_owner("u-silent") is None and await store.upload_owner("u-gone") is None
    assert await store.upload_owner("u-alive") is not None
    assert await store.drop_dead_uploads(200) == []
    await store.close()


@async_test
async def test_slot_claims_respect_the_stored_load(backend: Backend) -> None:
    """A claim is taken only while the node has a free slot, counting every claim on it; the
    load of the latest-started poll counts, the caller's own view only until one was stored."""
    store = await backend.open()
    n1 = await store.insert_node("a", 1, "", False, None, 0)
    n2 = await store.insert_node("b", 2, "", False, None, 1)
    assert await store.claim_slot("t1", n1, "r1", (2, 0))  # no stored load yet: the view (2 slots)
    assert await store.claim_slot("t1", n1, "r1", (0, 0))  # held already: no-op, even if full
    started = await store.clock_ms()
    await store.node_seen(n1, (2, 1), started)  # a poll: 2 slots, 1 task queued on the node
    assert not await store.claim_slot("t2", n1, "r2", (9, 0))  # 2 - 1 - t1 = 0 free
    assert await store.claim_slot("t2", n1, "r2", (9, 0), force=True)  # overflow: counted anyway
    await store.node_seen(n1, (5, 0), started - 1)  # a poll that started earlier: ignored
    assert not await store.claim_slot("t3", n1, "r2", (9, 0))
    assert await store.slot_claims() == {n1: 2}
    assert await store.claim_slot("t2", n2, "r2", (1, 0))  # moves t2 to n2
    assert await store.slot_claims() == {n1: 1, n2: 1}
    await store.release_slot("t2", n1)  # not on n1 any more: kept
    await store.release_slot("t1")
    assert await store.slot_claims() == {n2: 1}
    assert await store.claim_slot("t3", n1, "r2", (0, 0))  # 2 - 1 - 0 = 1 free
    await store.delete_node(n2)
    assert await store.slot_claims() == {n1: 1}
    await store.close()


@async_test
async def test_a_placed_claim_lasts_until_a_later_poll(backend: Backend) -> None:
    store = await backend.open()
    node = await store.insert_node("a", 1, "", False, None, 0)
    await store.node_seen(node, (1, 0), await store.clock_ms())
    assert await store.claim_slot("t1", node, "r1", (1, 0))
    early_poll = await store.clock_ms()  # asked before the node committed the task
    await store.place_slot("t1")
    await store.node_seen(node, (1, 0), early_poll)  # it could not see t1: the claim stays
    assert await store.slot_claims() == {node: 1}
    assert not await store.claim_slot("t2", node, "r1", (1, 0))
    await store.node_seen(node, (1, 1), await store.clock_ms())  # sees t1 queued: claim dropped
    assert await store.slot_claims() == {}
    assert not await store.claim_slot("t2", node, "r1", (1, 0))  # still full: the load says so
    await store.node_seen(node, (1, 0), await store.clock_ms())  # t1 finished
    assert await store.claim_slot("t2", node, "r1", (1, 0))
    await store.close()


@async_test
async def test_racing_claims_take_each_slot_once(backend: Backend) -> None:
    store = await backend.open()
    node = await store.insert_node("a", 1, "", False, None, 0)
    await store.node_seen(node, (3, 0), await store.clock_ms())
    won = await asyncio.gather(*(store.claim_slot(f"t{i}", node, "r", (3, 0)) for i in range(30)))
    assert sum(won) == 3 and await store.slot_claims() == {node: 3}
    await store.close()


@async_test
async def test_dead_replicas_claims_in_transit_are_dropped(backend: Backend) -> None:
    store = await backend.open()
    node = await store.insert_node("a", 1, "", False, None, 0)
    for uuid, replica in (("t1", "alive"), ("t2", "dead"), ("t3", "dead")):
        assert await store.claim_slot(uuid, node, replica, (9, 0))
    await store.place_slot("t3")  # on the node already: only a poll releases it
    assert await store.drop_stale_claims(["alive"]) == 0  # too recent to judge
    assert await store.drop_stale_claims(["alive"], older_than_ms=0) == 1
    assert await store.slot_claims() == {node: 2}
    await store.close()


@async_test
async def test_two_replicas_never_share_the_last_slot(postgres: PostgresServer) -> None:
    """Two processes' pools claiming at once: PostgreSQL serialises the claims of one node."""
    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    node = await stores[0].insert_node("a", 1, "", False, None, 0)
    await stores[1].node_seen(node, (2, 0), await stores[1].clock_ms())
    won = await asyncio.gather(
        *(stores[i % 2].claim_slot(f"t{i}", node, f"r{i % 2}", (2, 0)) for i in range(40))
    )
    assert sum(won) == 2
    for store in stores:
        await store.close()


@async_test
async def test_flood_counters_count_decay_and_refuse_at_the_limit(backend: Backend) -> None:
    """Over the limit an init is refused and not counted; a commit takes one off; every interval
    takes a third off (floored), as ClusterODM's forgiveness does."""
    store = await backend.open()
    started = [await store.flood_start("k", 2, 1000, 0) for _ in range(4)]
    assert started == [True, True, True, False]  # 3 > 2: the fourth floods
    assert await store.flood_start("other", 2, 1000, 0)  # counters are per token
    await store.flood_done("k", 1000, 10)  # 2 left
    assert await store.flood_start("k", 2, 1000, 20)  # 3
    assert not await store.flood_start("k", 2, 1000, 999)
    assert await store.flood_start("k", 2, 1000, 1000)  # int(3 * 0.66) = 1, then 2
    assert await store.flood_start("k", 2, 1000, 1500)  # 3
    assert not await store.flood_start("k", 2, 1000, 1999)
    await store.close()


@async_test
async def test_two_replicas_share_one_flood_counter(postgres: PostgresServer) -> None:
    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    won = await asyncio.gather(*(stores[i % 2].flood_start("k", 5, 60_000, 0) for i in range(20)))
    assert sum(won) == 6  # counts 1..6 pass (6 > 5 only after the sixth), the rest flood
    for store in stores:
        await store.close()


def task_of(uuid: str, owner: int, code: int = 20) -> TaskRecord:
    return TaskRecord(uuid, owner, {"uuid": uuid, "status": {"code": code}}, ["Launching"])


@async_test
async def test_admissions_count_a_tokens_running_tasks(backend: Backend) -> None:
    """Forwards in progress (local rows RUNNING) and routed tasks marked active count; finished
    rows, tasks of other owners, and routed tasks of nodes found down do not."""
    store = await backend.open()
    up = await store.insert_node("up", 1, "", False, None, 0)
    down = await store.insert_node("down", 2, "", False, None, 1)
    await store.put_tasks([task_of("done", 7, 40), task_of("theirs", 8)])
    await store.put_routes([("r-up", up, 7, 0), ("r-down", down, 7, 0), ("r-ended", up, 7, 0)])
    await store.set_active([("r-up", True), ("r-down", True)])
    assert await store.admit_task(task_of("t1", 7), 3, [down])  # r-up counts: 1 < 3
    assert not await store.admit_task(task_of("t2", 7), 2, [down])  # r-up, t1: 2
    assert await store.admit_task(task_of("t2", 7), 3, [down])
    assert not await store.admit_task(task_of("t3", 7), 3, [])  # r-down counts once it is up
    assert {t.uuid for t in await store.load_tasks()} == {"done", "theirs", "t1", "t2"}
    await store.close()


@async_test
async def test_racing_admissions_stop_at_the_limit(backend: Backend) -> None:
    store = await backend.open()
    won = await asyncio.gather(*(store.admit_task(task_of(f"t{i}", 3), 4, []) for i in range(20)))
    assert sum(won) == 4
    await store.close()


@async_test
async def test_two_replicas_admit_a_tokens_tasks_up_to_its_limit(postgres: PostgresServer) -> None:
    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    won = await asyncio.gather(*(stores[i % 2].admit_task(task_of(f"t{i}", 3), 3, []) for i in range(20)))
    assert sum(won) == 3
    for store in stores:
        await store.close()


@async_test
async def test_output_lines_are_appended_not_rewritten(backend: Backend) -> None:
    store = await backend.open()
    await store.put_tasks([task_of("t", 1)])
    await store.append_task_output([("t", ["a", "b"], 5), ("unknown", ["x"], 5)])
    await asyncio.gather(*(store.append_task_output([("t", [f"l{i}"], 6)]) for i in range(20)))
    (task,) = await store.load_tasks()
    assert task.output[:3] == ["Launching", "a", "b"] and sorted(task.output[3:]) == sorted(
        f"l{i}" for i in range(20)
    )
    assert task.updated_ms == 6
    await store.close()


@async_test
async def test_task_info_is_set_without_its_output(backend: Backend) -> None:
    store = await backend.open()
    await store.put_tasks([task_of("t", 1)])
    await store.append_task_output([("t", ["appended by another writer"], 5)])
    await store.set_task_info("t", {"uuid": "t", "status": {"code": 40}}, 7)
    await store.set_task_info("unknown", {"uuid": "unknown"}, 7)  # nothing to change: no row made
    (task,) = await store.load_tasks()
    assert task.info == {"uuid": "t", "status": {"code": 40}} and task.updated_ms == 7
    assert task.output == ["Launching", "appended by another writer"]
    await store.close()


@async_test
async def test_a_status_change_keeps_the_lines_another_replica_appended(postgres: PostgresServer) -> None:
    from clusterodm.cluster.tasks import TaskTable

    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    first = await TaskTable.open(stores[0])
    await first.put(task_of("t", 1))
    second = await TaskTable.open(stores[1])
    assert "t" in second  # loaded at open, as at a replica's start
    assert second.append_output("t", "from the second replica")
    await second.flush()
    assert await first.set_status("t", 30, "failed here")
    (task,) = await stores[1].load_tasks()
    assert task.info["status"] == {"code": 30, "errorMessage": "failed here"}
    assert task.output == ["Launching", "from the second replica"]
    for store in stores:
        await store.close()


@async_test
async def test_two_replicas_appending_to_one_task_lose_no_line(postgres: PostgresServer) -> None:
    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    await stores[0].put_tasks([task_of("t", 1)])
    await asyncio.gather(
        *(stores[i % 2].append_task_output([("t", [f"r{i % 2}-{i}"], i)]) for i in range(40))
    )
    (task,) = await stores[1].load_tasks()
    assert len(task.output) == 41 and task.output[0] == "Launching"
    for store in stores:
        await store.close()


@async_test
async def test_two_replicas_task_tables_append_lines_of_one_task(postgres: PostgresServer) -> None:
    """Each replica's task table stores only the lines it added (a flush appends them): what the
    other wrote meanwhile stays."""
    from clusterodm.cluster.tasks import TaskTable

    url = postgres.database()
    stores = [await open_store(url, Path()), await open_store(url, Path())]
    first = await TaskTable.open(stores[0])
    await first.put(task_of("t", 1))
    second = await TaskTable.open(stores[1])
    for i in range(5):
        assert first.append_output("t", f"a{i}") and second.append_output("t", f"b{i}")
    await asyncio.gather(first.flush(), second.flush())
    (task,) = await stores[0].load_tasks()
    assert task.output[0] == "Launching" and sorted(task.output[1:]) == sorted(
        [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    )
    for store in stores:
        await store.close()


# -- SQLite only -------------------------------------------------------------------------------


def test_a_sqlite_process_always_leads(tmp_path: Path) -> None:
    async def check() -> None:
        store = await SqliteStore.open(tmp_path / "db.sqlite3", exclusive=True)
        lock = store.leader_lock()
        assert await lock.acquire() and await lock.held()
        await store.close()

    asyncio.run(check())


def test_committed_writes_survive_a_killed_process(tmp_path: Path) -> None:
    """A process killed without closing its connection loses nothing it committed."""
    path = tmp_path / "db.sqlite3"
    script = (
        "import asyncio, os, sys\n"
        "from clusterodm.cluster.store_sqlite import SqliteStore\n"
        "async def main():\n"
        "    s = await SqliteStore.open(sys.argv[1], exclusive=True)\n"
        "    await s.insert_node('h', 3000, 't', False, None, 0)\n"
        "    await s.put_routes([('u%d' % i, 1, 0, i) for i in range(100)])\n"
        "    os._exit(0)  # no close, no checkpoint\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=30)

    async def check() -> None:
        store = await SqliteStore.open(path, exclusive=True)  # the dead process's lock is gone
        assert len(await store.load_routes()) == 100
        assert [r.hostname for r in await store.load_nodes()] == ["h"]
        await store.close()

    asyncio.run(check())
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_files_of_every_older_version_migrate(tmp_path: Path) -> None:
    """A data folder written by an older clusterodm opens, keeping its rows."""
    for version in range(1, store_sqlite.SCHEMA_VERSION):
        path = tmp_path / f"v{version}.sqlite3"
        with sqlite3.connect(path) as db:
            for migration in store_sqlite.MIGRATIONS[:version]:
                db.executescript(migration)
            db.execute("INSERT INTO routes VALUES ('old', 1, 0, 5)")
            db.execute(f"PRAGMA user_version = {version}")

        async def check(path: Path = path) -> None:
            store = await SqliteStore.open(path)
            assert await store.load_routes() == [("old", 1, 0, 5)]
            await store.set_active([("old", True)])
            assert await store.load_active() == ["old"]
            await store.close()

        asyncio.run(check())
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == store_sqlite.SCHEMA_VERSION


def test_one_process_per_file(tmp_path: Path) -> None:
    """The lock is held while the store is open, and released by close."""

    async def scenario() -> None:
        first = await open_store("", tmp_path)
        with pytest.raises(StoreLocked, match="another clusterodm uses the data folder"):
            await open_store("", tmp_path)
        await first.close()
        await (await open_store("", tmp_path)).close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x@h/db", "unknown database URL"),
        ("sqlite://relative/x.sqlite3", "sqlite:///absolute/path.sqlite3 or sqlite:relative"),
        ("sqlite:", "name the SQLite file"),
    ],
)
def test_bad_urls_say_what_to_write(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message.replace(".", r"\.")):
        asyncio.run(open_store(url, tmp_path))


def test_sqlite_url_forms(tmp_path: Path) -> None:
    from clusterodm.cluster.store import sqlite_path

    assert sqlite_path("", tmp_path) == tmp_path / "clusterodm.sqlite3"
    assert sqlite_path("sqlite:///var/lib/c.sqlite3", tmp_path) == Path("/var/lib/c.sqlite3")
    assert sqlite_path("sqlite:rel/c.sqlite3", tmp_path) == Path("rel/c.sqlite3")
    assert sqlite_path("postgresql://u:p@h:5432/db", tmp_path) is None


@async_test
async def test_one_advisory_lock_holder_and_takeover(postgres: PostgresServer) -> None:
    """One leader among the replicas of a database; a lost leader connection hands leadership on."""
    url = postgres.database()
    first, second = await store_pg.PostgresStore.open(url), await store_pg.PostgresStore.open(url)
    a, b = first.leader_lock(), second.leader_lock()
    assert await a.acquire() and await a.acquire()  # again: still held
    assert not await b.acquire() and not await b.held()
    await a.release()
    assert not await a.held()
    assert await b.acquire() and not await a.acquire()
    # The leader's session dies (server restart, network): it learns so, and another can lead.
    postgres.execute(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
        f"AND objid::bigint = {store_pg.LEADER_LOCK & 0xFFFFFFFF}",
    )
    assert not await b.held()
    # The server ends the terminated session (freeing its lock) a moment later: retry, bounded.
    for _ in range(100):
        if await a.acquire():
            break
        await asyncio.sleep(0.05)
    assert await a.held() and not await b.acquire()
    await a.release()
    await b.release()
    await first.close()
    await second.close()


def test_unreachable_postgresql_says_what_to_check(postgres: PostgresServer) -> None:
    from support.procs import free_port

    url = f"postgresql://clusterodm:s3cret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreError) as caught:
        asyncio.run(open_store(url, Path(".")))
    message = str(caught.value)
    assert message.startswith("cannot connect to the database postgresql://clusterodm:***@127.0.0.1:")
    assert "s3cret" not in message and "\n" not in message and "PostgreSQL is running" in message
    with pytest.raises(StoreError, match='database "missing" does not exist'):
        asyncio.run(open_store(postgres.url("missing"), Path(".")))


def test_a_caller_giving_up_leaves_the_write_whole(tmp_path: Path) -> None:
    """A request cancelled while its write waits: the write happens entirely, later calls work."""

    async def scenario() -> None:
        store = await SqliteStore.open(tmp_path / "db.sqlite3")
        writes = [asyncio.ensure_future(store.put_routes([(f"u{i}", 1, 0, i)])) for i in range(50)]
        await asyncio.sleep(0)  # submitted to the worker
        for write in writes[::2]:
            write.cancel()
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 25
        assert len(await store.load_routes()) == 50
        await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
