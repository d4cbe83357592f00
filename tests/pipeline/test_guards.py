"""Flood forgiveness, stale-upload cleanup (timeout and 48 h cap), and the early forward on refusal."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pyodm import Node

from clusterodm.config import Config
from clusterodm.pipeline import HARD_CAP_S, cleanup_interval
from clusterodm.pipeline.guards import FLOODING, FloodMonitor
from clusterodm.services import Cluster
from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]


class FakeClock:
    """An injected monotonic clock (a plain value we move by hand, no patching)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_flood_monitor_forgives_a_third_per_interval() -> None:
    clock = FakeClock()
    flood = FloodMonitor(2, decay_interval_s=900, clock=clock)
    for _ in range(3):
        assert not flood.flooding("t")
        flood.started("t")
    assert flood.flooding("t") and flood.count("t") == 3
    assert not flood.flooding("other")
    clock.now += 899
    assert flood.flooding("t")
    clock.now += 1  # one interval: 3 x 0.66 -> 1
    assert flood.count("t") == 1 and not flood.flooding("t")
    flood.committed("t")
    flood.committed("t")  # never below 0
    assert flood.count("t") == 0
    for _ in range(5):
        flood.started("t")
    clock.now += 2 * 900  # two intervals at once: 5 -> 3 -> 1
    assert flood.count("t") == 1
    clock.now += 900
    assert flood.count("t") == 0  # dropped at 0
    assert FloodMonitor(0, clock=clock).flooding("t") is False  # 0 = off
    off = FloodMonitor(0, clock=clock)
    off.started("t")
    assert off.count("t") == 0


def test_flood_limit_refuses_init_then_forgives(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack("--flood-limit", "1")
    first = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    assert httpx.post(f"{cluster.url}/task/new/init").json() == {"error": FLOODING}
    # A commit takes one back (even a refused one: 0 files), then an init passes again.
    images = make_images(tmp_path / "imgs", 1)
    with open(images[0], "rb") as f:
        httpx.post(f"{cluster.url}/task/new/upload/{first}", files={"images": ("a.jpg", f)})
    assert httpx.post(f"{cluster.url}/task/new/commit/{first}").json() == {"uuid": first}
    assert "uuid" in httpx.post(f"{cluster.url}/task/new/init").json()
    assert httpx.post(f"{cluster.url}/task/new/init").json() == {"error": FLOODING}


def test_flood_decay_interval_from_environment(tmp_path: Path) -> None:
    with SimNode(tmp_path, "--processing-seconds", "0.3") as node:
        env = {"CLUSTERODM_FLOOD_DECAY_S": "1"}
        with ClusterODM(tmp_path, "--flood-limit", "1", nodes=[node], env=env) as cluster:
            cluster.wait_online(1)
            for _ in range(3):
                httpx.post(f"{cluster.url}/task/new/init")
            started = time.monotonic()
            wait_until(lambda: "uuid" in httpx.post(f"{cluster.url}/task/new/init").json(), 10, "forgiveness")
            assert time.monotonic() - started < 5


def test_cleanup_interval_follows_the_timeout() -> None:
    assert cleanup_interval(0) == 30 * 60
    assert cleanup_interval(0.0005 * 3600) == 0.45
    assert cleanup_interval(0.00001 * 3600) == 0.2
    assert cleanup_interval(48 * 3600) == 30 * 60


def test_stale_upload_removed_after_fractional_timeout(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack("--stale-uploads-timeout", "0.0005")  # 1.8 s
    images = make_images(tmp_path / "imgs", 1)
    stale = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    with open(images[0], "rb") as f:
        assert httpx.post(
            f"{cluster.url}/task/new/upload/{stale}", files={"images": ("a.jpg", f)}
        ).json() == {"success": True}
    assert (cluster.tmp_dir / stale).is_dir()
    wait_until(lambda: tmp_entries(cluster) == [], 6, "stale upload removed")
    with open(images[0], "rb") as f:
        reply = httpx.post(f"{cluster.url}/task/new/upload/{stale}", files={"images": ("a.jpg", f)}).json()
    assert reply == {"error": "Invalid taskId: the task no longer exists."}
    assert "Removing abandoned upload " + stale in cluster.log()


def test_hard_cap_of_48_hours(tmp_path: Path) -> None:
    """Sessions and orphan folders older than 48 h go, younger ones stay (injected `now`, real files)."""

    async def scenario() -> None:
        cluster = await Cluster.open(Config(data_dir=tmp_path / "data"))
        try:
            pipeline = cluster.pipeline
            session = pipeline.sessions.create("3f1a7f52-8d53-4e0f-9d5c-35a4e5f0b0a1", "", {})
            orphan = cluster.config.tmp_dir / "leftover"
            orphan.mkdir()
            created = session.created_ms / 1000
            old = created - HARD_CAP_S - 60
            os.utime(orphan, (old, old))
            await pipeline.cleanup(now=created + HARD_CAP_S - 60)
            assert session.directory.is_dir() and session.uuid in pipeline.sessions
            assert not orphan.exists()
            await pipeline.cleanup(now=created + HARD_CAP_S + 60)
            assert not session.directory.exists() and session.uuid not in pipeline.sessions
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_refused_commit_stops_the_early_forward(stack: Stack, tmp_path: Path) -> None:
    """Files go to a node while the client uploads; a commit refused by limits leaves nothing behind."""
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"maxConcurrentTasks": 1}))
    slow = ("--processing-seconds", "3")
    nodes, cluster = stack("--no-queue", "--limits", str(limits), node_flags=[slow, slow, slow])
    images = make_images(tmp_path / "imgs", 3, size=2048)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    for path in images:
        with open(path, "rb") as f:
            httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files={"images": (Path(path).name, f)})

    def node_holding() -> SimNode | None:
        return next((n for n in nodes if len(list((n.data_dir / "tmp" / uuid).glob("*.JPG"))) == 3), None)

    wait_until(node_holding, 5, "files forwarded before commit")
    running = Node(cluster.host, cluster.port).create_task(images)  # takes the only slot
    reply = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    assert reply == {
        "error": "Reached maximum number of concurrent tasks: 1. Please wait until other tasks have "
        "finished, then restart the task."
    }
    assert uuid not in tmp_entries(cluster)
    assert all(uuid not in [t["uuid"] for t in httpx.get(f"{n.url}/task/list").json()] for n in nodes)
    running.wait_for_completion(interval=0.2)
    assert tmp_entries(cluster) == []
