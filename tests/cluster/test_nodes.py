"""NodeRegistry: nodes.json compatibility, reconciliation with SQLite, ranking through the board."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from clusterodm._native import NodeBoard
from clusterodm.cluster.node import DockerMachine, Node
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.store_sqlite import SqliteStore
from support.aio import async_test

INFO = {
    "version": "2.2.4",
    "taskQueueCount": 0,
    "maxImages": None,
    "maxParallelTasks": 2,
    "engine": "odm",
    "engineVersion": "3.5.1",
}
CLUSTERODM_NODES = [
    {"hostname": "10.0.0.5", "port": "3000", "token": "", "locked": True},
    {
        "hostname": "159.0.0.9",
        "port": 3000,
        "token": "Xc9",
        "dockerMachine": {
            "name": "clusterodm-120-5Hk2",
            "created": 1714557600000,
            "maxRuntime": -1,
            "maxUploadTime": 3600,
        },
    },
    {"hostname": "10.0.0.6", "port": 443, "token": "t"},
]


async def open_registry(tmp_path: Path, clock: list[int] | None = None) -> NodeRegistry:
    kwargs = {"clock": (lambda: clock[0])} if clock is not None else {}
    return await NodeRegistry.open(
        await SqliteStore.open(tmp_path / "db.sqlite3"), NodeBoard(), tmp_path / "nodes.json", **kwargs
    )


@async_test
async def test_imports_clusterodm_nodes_json(tmp_path: Path) -> None:
    (tmp_path / "nodes.json").write_text(json.dumps(CLUSTERODM_NODES))
    registry = await open_registry(tmp_path)
    a, b, c = registry.nodes
    assert (a.hostname, a.port, a.locked, a.auto_spawned) == ("10.0.0.5", 3000, True, False)
    assert b.docker_machine == DockerMachine("clusterodm-120-5Hk2", 1714557600000, -1, 3600)
    assert b.token == "Xc9" and b.auto_spawned
    assert a.base_url == "http://10.0.0.5:3000" and c.base_url == "https://10.0.0.6:443"
    assert registry.by_number(2) is b and registry.by_number(0) is None and registry.by_number(4) is None
    # Re-written in ClusterODM's format, numbers for ports, private to the owner.
    written = json.loads((tmp_path / "nodes.json").read_text())
    assert written[0] == {"hostname": "10.0.0.5", "port": 3000, "token": "", "locked": True}
    assert written[1]["dockerMachine"] == CLUSTERODM_NODES[1]["dockerMachine"]
    assert stat.S_IMODE((tmp_path / "nodes.json").stat().st_mode) == 0o600


@async_test
async def test_port_string_and_number_are_the_same_node(tmp_path: Path) -> None:
    nodes = [{"hostname": "h", "port": "3000", "token": ""}, {"hostname": "h", "port": 3000, "token": ""}]
    (tmp_path / "nodes.json").write_text(json.dumps(nodes))
    registry = await open_registry(tmp_path)
    assert len(registry) == 1  # ClusterODM bug 11: these were two nodes
    assert await registry.add("h", 3000) is None
    assert await registry.add("h", "3000") is None
    assert registry.find("h", "3000") is registry.find("h", 3000) is not None
    with pytest.raises(ValueError):
        await registry.add("h", "30x0")
    with pytest.raises(ValueError):
        await registry.add("h", 70000)


@async_test
async def test_ids_survive_restart_and_nodes_json_is_authoritative(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    a = await registry.add("a", 3000, "ta")
    b = await registry.add("b", 3001)
    assert a is not None and b is not None
    await registry.lock(b)
    # Operator edits nodes.json while stopped: b removed, c added, a moved behind c.
    (tmp_path / "nodes.json").write_text(
        json.dumps([{"hostname": "c", "port": 1}, {"hostname": "a", "port": 3000, "token": "new"}])
    )
    reopened = await open_registry(tmp_path)
    assert [n.hostname for n in reopened.nodes] == ["c", "a"]
    assert reopened.find("a", 3000).id == a.id  # type: ignore[union-attr]
    assert reopened.find("a", 3000).token == "new"  # type: ignore[union-attr]
    assert reopened.find("b", 3001) is None
    # Without nodes.json the stored list (and order) is used and the file re-created.
    (tmp_path / "nodes.json").unlink()
    again = await open_registry(tmp_path)
    assert [(n.hostname, n.id) for n in again.nodes] == [(n.hostname, n.id) for n in reopened.nodes]
    assert (tmp_path / "nodes.json").exists()


@async_test
async def test_corrupt_nodes_json_is_kept_aside(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    await registry.add("a", 3000)
    (tmp_path / "nodes.json").write_text("[{not json")
    reopened = await open_registry(tmp_path)
    assert [n.hostname for n in reopened.nodes] == ["a"]
    assert len(list(tmp_path.glob("nodes.json.corrupt-*"))) == 1


@async_test
async def test_atomic_write_leaves_no_temp_files_and_fires_listeners(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    events: list[tuple[str, str]] = []
    registry.on_change.append(lambda event, node: events.append((event, node.name)))
    node = await registry.add("a", 3000, "secret")
    assert node is not None
    await registry.lock(node)
    await registry.unlock(node)
    assert not await registry.unlock(node)  # already unlocked: no change, no event
    await registry.remove(node)
    assert events == [
        ("added", "a:3000"),
        ("locked", "a:3000"),
        ("unlocked", "a:3000"),
        ("removed", "a:3000"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "db.sqlite3",
        "db.sqlite3-shm",
        "db.sqlite3-wal",
        "nodes.json",
    ]
    assert json.loads((tmp_path / "nodes.json").read_text()) == []


@async_test
async def test_online_window_and_failed_poll(tmp_path: Path) -> None:
    clock = [1_000_000]
    registry = await open_registry(tmp_path, clock)
    node = await registry.add("a", 3000)
    assert node is not None and not node.online(clock[0]) and registry.reference_node() is None
    registry.apply_info(node, INFO, None)
    assert node.online(clock[0]) and registry.reference_node() is node
    clock[0] += 30_000
    registry.apply_info(node, None, "connection refused")
    assert node.online(clock[0])  # one failed poll is a blip, not an outage (ClusterODM's bug)
    assert node.last_refreshed_ms == 1_000_000 and node.last_error == "connection refused"
    clock[0] += 90_000  # two minutes since the last good poll: offline
    assert not node.online(clock[0]) and registry.best(1) is None and registry.reference_node() is None
    clock[0] += 5_000
    assert node.offline_for_ms(clock[0]) == 5_000  # not "since 1970" (bug 17)
    registry.apply_info(node, INFO, None)
    assert node.online(clock[0]) and node.offline_for_ms(clock[0]) == 0 and registry.best(1) is node
    clock[0] += 120_000  # no polls for two minutes: stale
    assert not node.online(clock[0]) and registry.best(1) is None


@async_test
async def test_reference_node_includes_locked(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    a = await registry.add("a", 1, locked=True)
    b = await registry.add("b", 2)
    assert a is not None and b is not None
    registry.apply_info(b, INFO, None)
    assert registry.reference_node() is b
    registry.apply_info(a, INFO, None)
    assert registry.reference_node() is a
    assert registry.best(1) is b  # locked nodes never get new tasks


@async_test
async def test_best_does_not_change_turns_choose_does(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    a = await registry.add("a", 1)
    b = await registry.add("b", 2)
    auto = await registry.add("c", 3, docker_machine=DockerMachine("m", 0))
    assert a is not None and b is not None and auto is not None
    for n in (a, b, auto):
        registry.apply_info(n, INFO, None)
    assert registry.best(5) is a and registry.best(5) is a
    assert (registry.turn(a), registry.turn(b)) == (0, 0)  # NODE BEST is a pure query (bug 12)
    assert registry.choose(5) is a
    assert registry.turn(a) == 1
    assert registry.choose(5) is b  # round robin between equals
    assert registry.choose(5) is a
    assert auto not in registry.rank(5)
    # In-transit forwards count against free slots.
    assert registry.free_slots(b) == 2
    registry.begin_transit(b)
    assert registry.free_slots(b) == 1
    registry.end_transit(b)
    assert registry.free_slots(b) == 2


@async_test
async def test_max_images_filter(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path)
    small = await registry.add("small", 1)
    big = await registry.add("big", 2)
    assert small is not None and big is not None
    registry.apply_info(small, {**INFO, "maxImages": 10}, None)
    registry.apply_info(big, {**INFO, "maxImages": 1000}, None)
    assert registry.best(5) is small  # smaller limit first
    assert registry.best(500) is big
    assert registry.best(5000) is None


def test_node_json_shapes() -> None:
    node = Node(1, "h", 3000, "tok", locked=False)
    assert node.to_clusterodm_json() == {"hostname": "h", "port": 3000, "token": "tok"}
    node.docker_machine = DockerMachine("m", 5, 10, 20, secret="s")
    assert node.to_clusterodm_json()["dockerMachine"] == {
        "name": "m",
        "created": 5,
        "maxRuntime": 10,
        "maxUploadTime": 20,
        "secret": "s",
    }
    assert Node(2, "::1", 8080).base_url == "http://[::1]:8080"
