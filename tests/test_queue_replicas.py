"""The task queue with two replicas on PostgreSQL: the leader is killed while tasks wait; the new
leader dispatches them, each to one node once, and no node ever gets two at a time."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from pipeline.flow import wait_until
from pipeline.test_queue import COMPLETED, QUEUED, Watcher, create, info
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode

ONE_SLOT = ("--parallel-tasks", "1", "--processing-seconds", "0.5", "--processing-time-tick", "0")


def leader(cluster: ClusterODM) -> str | None:
    listed = httpx.get(f"{cluster.admin_url}/r/replica/list", timeout=5).json()
    return next((r["address"] for r in listed if r["leader"]), None)


def test_a_new_leader_dispatches_the_queue_of_a_killed_one_none_twice(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    with (
        SimNode(tmp_path, *ONE_SLOT, name="s0") as s0,
        SimNode(tmp_path, *ONE_SLOT, name="s1") as s1,
        ClusterODM(tmp_path, "--db", url, nodes=[s0, s1], name="a").start(wait_nodes=2) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[s0, s1], name="b").start(wait_nodes=2) as b,
    ):
        wait_until(lambda: leader(b) == a.url, 10, "a leads")
        images = make_images(tmp_path / "imgs", 2)
        uuids = [create(b, images, name=f"long{i} sim-seconds=4")["uuid"] for i in range(2)]
        uuids += [create(b, images, name=f"t{i} sim-seconds=0.5")["uuid"] for i in range(4)]
        assert [info(b, u)["status"]["code"] for u in uuids[2:]] == [QUEUED] * 4
        assert info(b, uuids[-1])["output"][-1] == "Waiting for a free node: position 4 of 4"
        assert a.proc is not None
        a.proc.kill()  # SIGKILL: no clean shutdown, the leader lock goes with its session
        killed = time.monotonic()
        with Watcher(b, [s0, s1], uuids) as watcher:
            wait_until(lambda: leader(b) == b.url, 15, "b leads")
            wait_until(watcher.all_done, 40, "every task done")
        assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
        assert watcher.most_on_a_node == 1
        assert all(watcher.started[u] > killed for u in uuids[2:])  # the new leader sent them
        on_nodes = [t["uuid"] for node in (s0, s1) for t in httpx.get(f"{node.url}/task/list").json()]
        assert sorted(on_nodes) == sorted(uuids)  # each task on one node, once
