"""The task queue with two replicas on PostgreSQL: the leader is killed while tasks wait, and the
new leader dispatches them, each to one node once, no node ever getting two at a time; the
replica holding queued tasks' files is killed, and the leader fails them, saying why; or it is
killed and started again at once, and keeps them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psycopg

from pipeline.test_queue import CANCELED, COMPLETED, FAILED, QUEUED, Watcher, create, info
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode
from support.waiting import wait_until

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
        assert info(a, uuids[-1])["output"][-1] == "Waiting for a free node: position 4 of 4"  # via a
        cancelled = create(b, images, name="cancelled")["uuid"]
        assert httpx.post(f"{a.url}/task/cancel", data={"uuid": cancelled}).json() == {"success": True}
        assert info(b, cancelled)["status"]["code"] == CANCELED
        line = "Waiting for a free node: position 4 of 4"
        wait_until(lambda: info(b, uuids[-1])["output"][-1] == line, 5, "the line back to 4 of 4")
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
        assert sorted(on_nodes) == sorted(uuids)  # each task on one node, once (not the cancelled one)


def test_queued_tasks_of_a_replica_that_is_gone_fail_saying_why(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Their files were on its disk: the leader takes them out of the queue and fails them."""
    url = postgres.database()
    env = {"CLUSTERODM_QUEUE_OWNER_GONE_S": "1"}
    with (
        SimNode(tmp_path, *ONE_SLOT, name="s0") as s0,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="a", env=env).start(wait_nodes=1) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="b").start(wait_nodes=1) as b,
    ):
        wait_until(lambda: leader(b) == a.url, 10, "a leads")
        images = make_images(tmp_path / "imgs", 2)
        create(b, images, name="long sim-seconds=30")
        queued = [create(b, images, name=f"t{i}")["uuid"] for i in range(2)]
        assert [info(b, u)["status"]["code"] for u in queued] == [QUEUED] * 2
        assert b.proc is not None
        b.proc.kill()

        def failed() -> list[str]:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute("SELECT uuid FROM queued_tasks").fetchall()
                if rows:
                    return []
                tasks = conn.execute("SELECT info FROM tasks WHERE uuid = ANY(%s)", (queued,)).fetchall()
            return [json.loads(row[0])["status"].get("errorMessage", "") for row in tasks]

        messages = wait_until(lambda: len(failed()) == 2 and failed(), 30, "queued tasks failed")
        assert isinstance(messages, list)
        assert all("replica" in m and "Please create" in m for m in messages), messages
        with psycopg.connect(url, autocommit=True) as conn:
            codes = [
                json.loads(r[0])["status"]["code"] for r in conn.execute("SELECT info FROM tasks").fetchall()
            ]
        assert codes.count(FAILED) >= 2


def test_a_replica_killed_and_started_again_keeps_its_queued_tasks(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    with (
        SimNode(tmp_path, *ONE_SLOT, name="s0") as s0,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="b").start(wait_nodes=1) as b,
    ):
        images = make_images(tmp_path / "imgs", 2)
        running = create(b, images, name="long sim-seconds=60")["uuid"]
        queued = [create(b, images, name=f"t{i}")["uuid"] for i in range(3)]
        assert b.proc is not None
        b.proc.kill()
        b.start(wait_nodes=1)  # same data folder, a new replica id: it takes its queued tasks back
        lines = [info(a, u)["output"][-1] for u in queued]
        assert lines == [f"Waiting for a free node: position {i} of 3" for i in (1, 2, 3)]
        assert httpx.post(f"{a.url}/task/cancel", data={"uuid": running}).json() == {"success": True}
        with Watcher(b, [s0], queued) as watcher:
            wait_until(watcher.all_done, 30, "every task done")
        assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
        assert sorted(queued, key=lambda u: watcher.started[u]) == queued


def test_queued_tasks_outlive_the_upload_cleanup_of_their_stopped_replica(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """The leader forgets a stopped replica's upload sessions after 10 s, but its queued tasks wait
    for the queue's own, longer rule: started again meanwhile, the replica still sends them."""
    url = postgres.database()
    with (
        SimNode(tmp_path, *ONE_SLOT, name="s0") as s0,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[s0], name="b").start(wait_nodes=1) as b,
    ):
        wait_until(lambda: leader(b) == a.url, 10, "a leads")
        images = make_images(tmp_path / "imgs", 2)
        running = create(b, images, name="long sim-seconds=60")["uuid"]
        queued = [create(b, images, name=f"t{i}")["uuid"] for i in range(2)]
        assert b.proc is not None
        b.proc.kill()

        def sessions_left() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM upload_sessions WHERE uuid = ANY(%s)", (queued,))
                return int(row.fetchone()[0])  # type: ignore[index]

        wait_until(lambda: sessions_left() == 0, 30, "the leader forgets b's upload sessions")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT info FROM tasks WHERE uuid = ANY(%s)", (queued,)).fetchall()
        assert [json.loads(row[0])["status"]["code"] for row in rows] == [QUEUED] * 2
        b.start(wait_nodes=1)
        assert httpx.post(f"{a.url}/task/cancel", data={"uuid": running}).json() == {"success": True}
        with Watcher(b, [s0], queued) as watcher:
            wait_until(watcher.all_done, 30, "every task done")
        assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
