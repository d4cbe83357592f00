"""RouteIndex: write-through durability, ownership isolation, pruning, routes.json import, and the
activity of routed tasks (what `maxConcurrentTasks` counts)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from clusterodm._native import NodeBoard, RouteTable
from clusterodm.cluster import routing
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.store_sqlite import SqliteStore
from clusterodm.nodeodm.status import TaskStatus, status_code, status_code_in
from support.aio import async_test

U1 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11"
U2 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a12"
U3 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a13"


async def open_cluster(tmp_path: Path, clock: list[int] | None = None) -> tuple[NodeRegistry, RouteIndex]:
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    registry = await NodeRegistry.open(store, NodeBoard(), tmp_path / "nodes.json")
    kwargs = {"clock": (lambda: clock[0])} if clock is not None else {}
    return registry, await RouteIndex.open(store, RouteTable(), registry, **kwargs)


@async_test
async def test_routes_survive_restart_and_follow_node_removal(tmp_path: Path) -> None:
    registry, routes = await open_cluster(tmp_path)
    a = await registry.add("a", 1)
    b = await registry.add("b", 2)
    assert a is not None and b is not None
    await routes.add(U1, a, "alice")
    await routes.add(U2, b, "alice")
    await routes.add(U3, a, None)
    registry2, routes2 = await open_cluster(tmp_path)
    assert len(routes2) == 3
    node = routes2.lookup(U2, "alice", enforce_owner=True)
    assert node is not None and node.name == "b:2"
    a2 = registry2.find("a", 1)
    assert a2 is not None
    assert await registry2.remove(a2) == sorted([U1, U3])
    assert U1 not in routes2 and routes2.lookup(U1, "alice", enforce_owner=False) is None
    _, routes3 = await open_cluster(tmp_path)
    assert len(routes3) == 1 and await routes3.remove(U2) and not await routes3.remove(U2)
    _, routes4 = await open_cluster(tmp_path)
    assert len(routes4) == 0


@async_test
async def test_ownership_isolation(tmp_path: Path) -> None:
    registry, routes = await open_cluster(tmp_path)
    node = await registry.add("a", 1)
    assert node is not None
    await routes.add(U1, node, "alice")
    await routes.add(U2, node, "bob")
    await routes.add(U3, node, "")
    assert routes.lookup(U1, "alice", enforce_owner=True) is node
    assert routes.lookup(U1, "bob", enforce_owner=True) is None  # as if unknown
    assert routes.lookup(U1, "mallory", enforce_owner=True) is None
    assert routes.lookup(U1, None, enforce_owner=True) is None
    assert routes.lookup(U3, None, enforce_owner=True) is node  # no token owns the no-token tasks
    assert routes.lookup(U1, "bob", enforce_owner=False) is node  # ClusterODM-compatible mode
    assert routes.for_owner("alice") == [U1] and routes.for_owner("nobody") == []
    assert await routes.owner_id("") == 0 and await routes.owner_id("alice") == await routes.owner_id(
        "alice"
    ) != await routes.owner_id("bob")
    assert routes.lookup("not-a-uuid", "alice", enforce_owner=True) is None
    # Only hashes of tokens are stored.
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    blobs = [row[0] for row in db.execute("SELECT token_sha256 FROM owners")]
    assert len(blobs) == 2 and all(len(b) == 32 for b in blobs)
    assert b"alice" not in (tmp_path / "db.sqlite3").read_bytes()


@async_test
async def test_access_times_flush_and_prune(tmp_path: Path) -> None:
    day = 86_400_000
    clock = [100 * day]
    registry, routes = await open_cluster(tmp_path, clock)
    node = await registry.add("a", 1)
    assert node is not None
    await routes.add(U1, node, "t")
    await routes.add(U2, node, "t")
    await routes.add(U3, node, "t")
    clock[0] += 20 * day
    assert routes.lookup(U1, "t", enforce_owner=True) is node  # refreshes U1
    assert await routes.flush() == 1
    clock[0] += 15 * day
    # U2 and U3 are 35 days old; U3's task is still running on its node.
    assert await routes.prune(30 * day, is_live=lambda uuid: uuid == U3) == [U2]
    assert U1 in routes and U3 in routes and U2 not in routes
    _, reopened = await open_cluster(tmp_path, clock)
    assert sorted(r.uuid for r in reopened.entries()) == sorted([U1, U3])
    peeked = reopened.peek(U3)
    assert peeked is not None and peeked.accessed_ms == clock[0]  # live route was refreshed


@async_test
async def test_import_clusterodm_routes_json(tmp_path: Path) -> None:
    registry, routes = await open_cluster(tmp_path)
    node = await registry.add("10.0.0.5", 3000, "nodetok")
    assert node is not None
    data = {
        U1: {
            "node": {"hostname": "10.0.0.5", "port": "3000", "token": "nodetok"},
            "token": "alice",
            "accessed": 1714557600000,
        },
        U2: {"node": {"hostname": "10.0.0.5", "port": 3000, "token": "nodetok"}, "accessed": 1714557600001},
        U3: {"node": {"hostname": "gone.example", "port": 3000}, "token": "alice", "accessed": 1},
        "not-a-uuid": {"node": {"hostname": "10.0.0.5", "port": 3000}, "accessed": 1},
    }
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(data))
    assert await routes.import_clusterodm_routes(path) == 2
    assert not path.exists() and (tmp_path / "routes.json.imported").exists()
    assert await routes.import_clusterodm_routes(path) == 0  # only once
    assert routes.lookup(U1, "alice", enforce_owner=True) is node
    assert routes.lookup(U2, None, enforce_owner=True) is node  # no token in the file: owner 0
    assert routes.lookup(U2, "alice", enforce_owner=True) is None
    _, reopened = await open_cluster(tmp_path)
    assert len(reopened) == 2


@async_test
async def test_maintenance_loop_flushes_and_prunes(tmp_path: Path) -> None:
    import asyncio

    from clusterodm.cluster.maintenance import Maintenance
    from clusterodm.cluster.tasks import LocalTask, TaskTable

    day = 86_400_000
    clock = [400 * day]
    registry, routes = await open_cluster(tmp_path, clock)
    tasks = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"), clock=lambda: clock[0])
    node = await registry.add("a", 1)
    assert node is not None
    await routes.add(U1, node, "t")
    await routes.add(U2, node, "t")
    await tasks.put(LocalTask(U3, 0, {"status": {"code": 30}}, []))
    clock[0] += 31 * day
    assert routes.lookup(U1, "t", enforce_owner=True) is node  # U1 stays fresh; U2 and U3 are old
    reader = await SqliteStore.open(tmp_path / "db.sqlite3")

    async def scenario() -> None:
        job = asyncio.create_task(Maintenance(routes, tasks, flush_interval_s=0.01).run())
        for _ in range(300):
            if [r[0] for r in await reader.load_routes()] == [U1] and not await reader.load_tasks():
                break
            await asyncio.sleep(0.01)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    await asyncio.wait_for(scenario(), 10)
    assert await reader.load_routes() == [(U1, node.id, await routes.owner_id("t"), clock[0])]
    assert await reader.load_tasks() == []


@async_test
async def test_stale_routes_of_live_tasks_are_kept(tmp_path: Path) -> None:

    from clusterodm.cluster.maintenance import Maintenance
    from clusterodm.cluster.tasks import TaskTable

    day = 86_400_000
    clock = [400 * day]
    registry, routes = await open_cluster(tmp_path, clock)
    tasks = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"), clock=lambda: clock[0])
    node = await registry.add("a", 1)
    assert node is not None
    for uuid in (U1, U2, U3):
        await routes.add(uuid, node, "t")
    clock[0] += 31 * day
    assert routes.lookup(U3, "t", enforce_owner=True) is node  # fresh
    asked: list[list[str]] = []

    async def still_running(uuids: list[str]) -> set[str]:
        asked.append(sorted(uuids))
        return {U1}  # U1 still processes on its node, U2 finished long ago

    maintenance = Maintenance(routes, tasks, live_check=still_running)
    removed, _ = await maintenance.prune()
    assert asked == [sorted([U1, U2])] and removed == [U2]
    assert U1 in routes and U2 not in routes and U3 in routes
    assert routes.peek(U1) is not None and routes.peek(U1).accessed_ms == clock[0]  # type: ignore[union-attr]
    reader = await SqliteStore.open(tmp_path / "db.sqlite3")
    assert sorted(r[0] for r in await reader.load_routes()) == sorted([U1, U3])


@async_test
async def test_activity_follows_status_news_and_survives_restart(tmp_path: Path) -> None:
    """Which routed tasks are queued or running: set by news of their status, kept in the store,
    dropped with their route or node."""
    registry, routes = await open_cluster(tmp_path)
    a, b = await registry.add("a", 1), await registry.add("b", 2)
    assert a is not None and b is not None
    await routes.add(U1, a, "alice")
    await routes.add(U2, b, "alice")
    await routes.add(U3, a, "bob")
    alice, bob = await routes.owner_id("alice"), await routes.owner_id("bob")
    for uuid in (U1, U2, U3):
        routes.observe_status(uuid, TaskStatus.QUEUED)
    routes.observe_status(U1, TaskStatus.RUNNING)
    routes.observe_status(U2, None)  # an answer without a status tells nothing
    routes.observe_status("0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a99", TaskStatus.RUNNING)  # no route: ignored
    assert sorted(routes.active_for(alice)) == [U1, U2] and routes.active_for(bob) == [U3]
    routes.observe_status(U2, TaskStatus.COMPLETED)
    assert routes.active_for(alice) == [U1]
    await routes.close()  # activity news is batched: the shutdown writes what is pending
    registry2, routes2 = await open_cluster(tmp_path)
    assert routes2.active_for(alice) == [U1] and routes2.active_for(bob) == [U3]
    a2 = registry2.find("a", 1)
    assert a2 is not None
    await registry2.remove(a2)
    assert routes2.active_for(alice) == [] and routes2.active_for(bob) == []
    _, routes3 = await open_cluster(tmp_path)
    assert routes3.active_for(alice) == [] and len(routes3) == 1


@async_test
async def test_activity_stale_lists_only_active_tasks_without_news(tmp_path: Path) -> None:
    clock = [1_000]
    registry, routes = await open_cluster(tmp_path, clock)
    node = await registry.add("a", 1)
    assert node is not None
    await routes.add(U1, node, "t")
    await routes.add(U2, node, "t")
    await routes.add(U3, node, "t")  # never seen active: never re-checked
    routes.observe_status(U1, TaskStatus.RUNNING)
    routes.observe_status(U2, TaskStatus.RUNNING)
    clock[0] = 5_000
    routes.observe_status(U2, TaskStatus.RUNNING)
    assert routes.activity.stale(4_000) == [U1]
    await routes.remove(U1)
    assert routes.activity.stale(4_000) == [] and U1 not in routes.activity


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"uuid":"x","status":{"code":20},"output":["\\"status\\":{\\"code\\":40}"]}', 20),
        (b'{"output":["\\"status\\":{\\"code\\":40}"],"status":{"code":40}}', 40),
        (b'{"error":"x not found"}', None),
        (b'{"status":{"code":"x"}}', None),
    ],
)
def test_status_code_read_from_an_info_answer(body: bytes, code: int | None) -> None:
    assert status_code_in(body) == code
    parsed = json.loads(body)
    assert status_code(parsed) == (code if isinstance(parsed.get("status", {}).get("code"), int) else None)


@async_test
async def test_activity_check_answers_never_override_fresher_news(tmp_path: Path) -> None:
    """A node's answer to a re-check was asked earlier than news that came in meanwhile (an info
    poll saw the task complete, a restart queued it again): the fresher news stands."""
    clock = [1_000]
    registry, routes = await open_cluster(tmp_path, clock)
    node = await registry.add("a", 1)
    assert node is not None
    await routes.add(U1, node, "t")
    routes.observe_status(U1, TaskStatus.RUNNING)
    routes.activity.checked(U1, False, asked_ms=900)  # asked before the last news: ignored
    assert U1 in routes.activity
    clock[0] = 2_000
    routes.observe_status(U1, TaskStatus.COMPLETED)
    routes.activity.checked(U1, True, asked_ms=1_500)  # "still running", asked before it ended
    assert U1 not in routes.activity
    routes.observe_status(U1, TaskStatus.QUEUED)  # restarted
    clock[0] = 3_000
    routes.activity.checked(U1, True, asked_ms=2_500)
    assert routes.activity.stale(2_400) == [] and U1 in routes.activity
    routes.activity.checked(U1, False, asked_ms=3_000)
    assert U1 not in routes.activity


@async_test
async def test_removal_notices_are_kept_for_a_few_seconds_not_until_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each removal another replica announces is remembered `ABSENT_TTL_S` (so a read in flight
    does not bring the route back); a steady stream of removals must not pile up for good."""
    _, routes = await open_cluster(tmp_path)
    now = [1000.0]
    monkeypatch.setattr(routing.time, "monotonic", lambda: now[0])
    for second in range(60):
        now[0] = 1000.0 + second
        routes.routes_removed([str(UUID(int=second * 100 + i)) for i in range(100)])
    held = len(routes._absent)  # noqa: SLF001 (the bounded memory is what is tested)
    assert held <= 100 * (routing.ABSENT_TTL_S + 1), held
    assert held >= 100 * routing.ABSENT_TTL_S  # the last seconds' removals are still remembered


@async_test
async def test_a_removed_task_leaves_no_status_history_behind(tmp_path: Path) -> None:
    """Removed for good (here or on another replica), a task's timeline is dropped, not kept
    until the bound; a machine's retirement keeps it, since the final state stays readable."""
    registry, routes = await open_cluster(tmp_path)
    node = await registry.add("a", 1)
    assert node is not None
    for u in (U1, U2, U3):
        await routes.add(u, node, "t")
        routes.observe_status(u, TaskStatus.RUNNING)
        assert routes.timeline.last(u) == TaskStatus.RUNNING
    assert await routes.remove(U1)
    routes.routes_removed([U2])
    assert await routes.remove(U3, keep_history=True)
    assert [routes.timeline.last(u) for u in (U1, U2, U3)] == [None, None, TaskStatus.RUNNING]
    assert len(routes.timeline) == 1
