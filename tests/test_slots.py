"""Limits count cluster-wide on PostgreSQL replicas: two replicas forwarding at once never put more
tasks on a node than it has slots (each forward claims its node's slot in the database), and the
flood limit and a token's maxConcurrentTasks count its tasks through every replica."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from pyodm import Node

from clusterodm.pipeline.guards import FLOODING, max_concurrent_reached
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode

NODES = 6


@pytest.fixture
def one_slot_nodes(tmp_path: Path) -> Iterator[list[SimNode]]:
    """Nodes with one slot each whose tasks outlast the test: a node given two tasks holds both."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(SimNode(tmp_path, "-q", "1", "--processing-seconds", "120", name=f"sim{i}"))
            for i in range(NODES)
        ]


def wait_routed(url: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while (routed := conn.execute("SELECT count(*) FROM routes").fetchone()) != (count,):
            assert time.monotonic() < deadline, f"{routed} of {count} tasks forwarded"
            time.sleep(0.05)


def test_two_replicas_forwarding_at_once_never_exceed_a_nodes_slots(
    tmp_path: Path, postgres: PostgresServer, one_slot_nodes: list[SimNode]
) -> None:
    url = postgres.database()
    images = make_images(tmp_path / "images", 3)
    with (
        ClusterODM(tmp_path, "--db", url, nodes=one_slot_nodes, name="a").start(wait_nodes=NODES) as a,
        ClusterODM(tmp_path, "--db", url, nodes=one_slot_nodes, name="b").start(wait_nodes=NODES) as b,
    ):
        # As many tasks as slots, committed at once through both replicas: one task per node.
        # Each replica alone would rank the nodes alike and send its first task to the same node.
        targets = [Node(r.host, r.port) for r in (a, b) for _ in range(NODES // 2)]
        with ThreadPoolExecutor(NODES) as pool:
            tasks = list(pool.map(lambda node: node.create_task(images, name="slot"), targets))
        assert len({str(t.uuid) for t in tasks}) == NODES
        wait_routed(url, NODES)
        loads = [node.load() for node in one_slot_nodes]
        assert [load["maxQueueCount"] for load in loads] == [1] * NODES, loads


def test_the_flood_limit_counts_a_tokens_uploads_through_every_replica(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    flags = ("--db", postgres.database(), "--flood-limit", "3")
    with (
        SimNode(tmp_path) as sim,
        ClusterODM(tmp_path, *flags, nodes=[sim], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, *flags, nodes=[sim], name="b").start(wait_nodes=1) as b,
    ):

        def init(replica: ClusterODM) -> dict[str, str]:
            reply: dict[str, str] = httpx.post(f"{replica.url}/task/new/init").json()
            return reply

        # Counts 1 to 4 pass (4 > 3 only once the fourth is counted), alternating replicas;
        # each replica alone has seen two, far from its limit, yet both refuse the fifth.
        sessions = [init(replica) for replica in (a, b, a, b)]
        assert all("uuid" in s for s in sessions), sessions
        assert init(a) == init(b) == {"error": FLOODING}
        # A commit through A takes one back for the cluster: B accepts one more, then neither.
        image = make_images(tmp_path / "images", 1)[0]
        first = sessions[0]["uuid"]
        with open(image, "rb") as f:
            httpx.post(f"{a.url}/task/new/upload/{first}", files={"images": ("a.jpg", f)})
        assert httpx.post(f"{a.url}/task/new/commit/{first}").json() == {"uuid": first}
        assert "uuid" in init(b)
        assert init(a) == {"error": FLOODING}


def create(replica: ClusterODM, image: Path) -> dict[str, str]:
    """init, one upload, commit through `replica`: the commit's answer (or the first error)."""
    reply: dict[str, str] = httpx.post(f"{replica.url}/task/new/init").json()
    if "uuid" not in reply:
        return reply
    uuid = reply["uuid"]
    with open(image, "rb") as f:
        httpx.post(f"{replica.url}/task/new/upload/{uuid}", files={"images": ("a.jpg", f)})
    answer: dict[str, str] = httpx.post(f"{replica.url}/task/new/commit/{uuid}", timeout=30).json()
    return answer


def test_a_tokens_concurrent_tasks_count_through_every_replica(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """maxConcurrentTasks 2, ClusterODM's refusal (--no-queue): with one task running, four commits
    at once through both replicas (each replica alone sees room for them) let exactly one in."""
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"maxConcurrentTasks": 2}))
    flags = ("--db", postgres.database(), "--no-queue", "--limits", str(limits))
    image = make_images(tmp_path / "images", 1)[0]
    with (
        SimNode(tmp_path, "-q", "8", "--processing-seconds", "120") as sim,
        ClusterODM(tmp_path, *flags, nodes=[sim], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, *flags, nodes=[sim], name="b").start(wait_nodes=1) as b,
    ):
        assert "uuid" in create(a, image)
        wait_routed(flags[1], 1)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda replica: create(replica, image), [a, b, a, b]))
        accepted = [x for x in answers if "uuid" in x]
        assert len(accepted) == 1, answers
        assert all(x == {"error": max_concurrent_reached(2)} for x in answers if "uuid" not in x), answers
        wait_routed(flags[1], 2)
        assert sim.load()["maxQueueCount"] == 2
