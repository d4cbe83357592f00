"""The admin charts' history (bounded ring buffer, one-hour window, what a sample counts), the
status timeline behind the task detail view, and the masking of secret task options."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clusterodm._native import NodeBoard, RouteTable
from clusterodm.admin.history import MAX_NODES, History, Sample, node_load
from clusterodm.admin.views import options_public
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.store_sqlite import SqliteStore
from clusterodm.cluster.tasks import LocalTask, TaskTable
from clusterodm.cluster.timeline import StatusTimeline
from clusterodm.nodeodm.status import TaskStatus
from support.aio import async_test

U1 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11"
U2 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a12"
U3 = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a13"


class Parts:
    """A registry, routes and task table over a real store, on a hand-moved clock (ms)."""

    registry: NodeRegistry
    routes: RouteIndex
    tasks: TaskTable

    def __init__(self) -> None:
        self.now = 1_000_000
        self.received = 0

    @classmethod
    async def open(cls, tmp_path: Path) -> Parts:
        parts = cls()
        store = await SqliteStore.open(tmp_path / "db.sqlite3")
        parts.registry = await NodeRegistry.open(
            store, NodeBoard(), tmp_path / "nodes.json", clock=parts.clock
        )
        parts.routes = await RouteIndex.open(store, RouteTable(), parts.registry, clock=parts.clock)
        parts.tasks = await TaskTable.open(store, clock=parts.clock, timeline=parts.routes.timeline)
        return parts

    def clock(self) -> int:
        return self.now

    def history(self, interval_s: float = 5.0, window_s: float = 3600.0) -> History:
        return History(
            self.registry,
            self.routes,
            self.tasks,
            lambda: self.received,
            interval_s=interval_s,
            window_s=window_s,
            clock=self.clock,
        )


@async_test
async def test_buffer_is_bounded_and_keeps_one_hour(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    history = parts.history(interval_s=5)
    assert history.samples.maxlen == 721
    for _ in range(2000):
        history.sample()
        parts.now += 5000
    assert len(history.samples) == 721
    first, last = history.samples[0].at_ms, history.samples[-1].at_ms
    assert last - first == 3600 * 1000
    # Samples taken late (a busy loop, a suspended laptop) still leave nothing older than the window.
    parts.now += 50 * 60 * 1000
    history.sample()
    assert all(parts.now - s.at_ms <= 3600 * 1000 for s in history.samples)
    assert len(history.samples) == 1 + 10 * 60 // 5


@async_test
async def test_tiny_intervals_are_raised(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    assert parts.history(interval_s=0.001).samples.maxlen == 36_001


@async_test
async def test_upload_bytes_per_interval(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    history = parts.history(interval_s=2)
    parts.received = 5_000  # received before the first sample: not charted as a burst
    history.sample()
    parts.now += 2000
    parts.received += 4_000
    history.sample()
    parts.now += 4000  # a late sample: the rate is over the real span
    parts.received += 4_000
    history.sample()
    series = history.series()
    assert series["uploadBytes"] == [0, 4_000, 4_000]
    assert series["uploadRate"] == [0.0, 2_000.0, 1_000.0]


@async_test
async def test_node_load_splits_queue_by_slots(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    assert node_load("a", 3, 2, True) == ("a", 2, 1, 2, True)
    assert node_load("a", 1, 2, True) == ("a", 1, 0, 2, True)
    assert node_load("a", None, 2, False) == ("a", None, None, 2, False)
    a = await parts.registry.add("a", 1)
    b = await parts.registry.add("b", 2)
    assert a is not None and b is not None
    parts.registry.apply_info(a, {"taskQueueCount": 3, "maxParallelTasks": 2}, None)
    history = parts.history()
    history.sample()
    await parts.registry.remove(b)
    parts.now += 5000
    history.sample()
    nodes = {n["name"]: n for n in history.series()["nodes"]}
    assert nodes["a:1"]["running"] == [2, 2] and nodes["a:1"]["queued"] == [1, 1]
    assert nodes["a:1"]["slots"] == [2, 2] and nodes["a:1"]["online"] == [True, True]
    assert nodes["b:2"]["running"] == [None, None]  # never polled...
    assert nodes["b:2"]["online"] == [False, None]  # ...and gone in the second sample


@async_test
async def test_node_count_per_sample_is_bounded(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    for port in range(1, MAX_NODES + 10):
        await parts.registry.add("n", port)
    assert len(parts.history().sample().nodes) == MAX_NODES


@async_test
async def test_tasks_by_status_follow_what_the_cluster_hears(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    node = await parts.registry.add("a", 1)
    assert node is not None
    await parts.tasks.put(LocalTask(U1, 0, {"status": {"code": 20}}, []))  # a forward in progress
    await parts.routes.add(U2, node, "")
    parts.routes.observe_status(U2, TaskStatus.RUNNING)
    await parts.routes.add(U3, node, "")
    parts.routes.observe_status(U3, TaskStatus.COMPLETED)
    history = parts.history()
    assert history.sample().statuses == {20: 2, 40: 1}
    # U1 reaches its node; U2 ends; U3 is removed (no longer counted).
    await parts.routes.add(U1, node, "")
    parts.routes.observe_status(U1, TaskStatus.QUEUED)
    await parts.tasks.remove(U1)
    parts.routes.observe_status(U2, TaskStatus.FAILED)
    await parts.routes.remove(U3)
    assert history.sample().statuses == {10: 1, 30: 1}
    statuses = history.series()["statuses"]
    assert statuses["running"] == [2, 0] and statuses["completed"] == [1, 0]
    assert statuses["queued"] == [0, 1] and statuses["failed"] == [0, 1]


@async_test
async def test_local_entries_loaded_at_start_are_counted(tmp_path: Path) -> None:
    first = await Parts.open(tmp_path)
    await first.tasks.put(LocalTask(U1, 0, {"status": {"code": 30}}, ["Cannot forward"]))
    await first.tasks.close()
    again = await Parts.open(tmp_path)
    assert U1 not in again.routes.timeline
    assert again.history().sample().statuses == {30: 1}


@async_test
async def test_timeline_records_changes_where_they_happened(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    node = await parts.registry.add("a", 1)
    assert node is not None
    await parts.tasks.put(LocalTask(U1, 0, {"status": {"code": 20}}, []))
    parts.now += 10
    await parts.routes.add(U1, node, "")
    parts.routes.observe_status(U1, TaskStatus.QUEUED)
    await parts.tasks.remove(U1)
    for _ in range(3):  # every info answer passing through says it again: one change
        parts.now += 10
        parts.routes.observe_status(U1, TaskStatus.RUNNING)
    parts.routes.observe_status(U1, None)  # an answer without a status is no news
    parts.now += 10
    parts.routes.observe_status(U1, TaskStatus.COMPLETED)
    changes = parts.routes.timeline.changes(U1)
    assert [(c.code, c.where) for c in changes] == [
        (20, "clusterodm"),
        (10, "a:1"),
        (20, "a:1"),
        (40, "a:1"),
    ]
    assert [c.at_ms - changes[0].at_ms for c in changes] == [0, 10, 20, 50]  # the first repeat counts


def test_timeline_is_bounded() -> None:
    timeline = StatusTimeline(max_tasks=3, max_changes=4, clock=lambda: 0)
    for code in range(10):
        timeline.observe(U1, code)
    assert [c.code for c in timeline.changes(U1)] == [6, 7, 8, 9]
    for i in range(5):
        timeline.observe(f"task-{i}", 10)
    assert len(timeline) == 3 and U1 not in timeline
    timeline.observe("task-2", 20)  # a change keeps a task among the recent ones
    timeline.observe("task-5", 10)
    assert "task-2" in timeline and "task-3" not in timeline
    assert timeline.last("task-2") == 20 and timeline.last("nothing") is None


@async_test
async def test_sampling_runs_until_cancelled(tmp_path: Path) -> None:
    parts = await Parts.open(tmp_path)
    history = parts.history(interval_s=0.1)
    take = history.sample

    async def run_a_while() -> None:
        three = asyncio.Event()

        def counted() -> Sample:
            sample = take()
            if len(history.samples) == 3:
                three.set()
            return sample

        history.sample = counted  # type: ignore[method-assign]
        job = asyncio.create_task(history.run())
        async with asyncio.timeout(5):
            await three.wait()
        job.cancel()

    await run_a_while()
    assert len(history.samples) == 3


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("token", "abc", "****"),
        ("access-key", "AKIA", "****"),
        ("aws_secret_access_key", "s3cr3t", "****"),
        ("db-password", 5, "****"),
        ("ssh-passphrase", "x", "****"),
        ("Secret", "x", "****"),
        ("keypoints", 10000, 10000),  # a word of the name must be one of them, not a prefix
        ("min-num-features", 8000, 8000),
        ("monkey", "x", "x"),
        ("sm-cluster", "http://h:3000/?token=abc&x=1", "http://h:3000/?token=****&x=1"),
        ("sm-cluster", "http://h:3000/", "http://h:3000/"),
    ],
)
def test_secret_options_are_masked(name: str, value: object, shown: object) -> None:
    assert options_public([{"name": name, "value": value}]) == [{"name": name, "value": shown}]


def test_odd_options_are_dropped_not_shown() -> None:
    assert options_public(None) == []
    assert options_public("token=abc") == []
    assert options_public([{"value": "abc"}, "token", {"name": "dsm", "value": True}]) == [
        {"name": "dsm", "value": True}
    ]
