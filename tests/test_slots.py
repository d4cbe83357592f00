"""Slots count cluster-wide: two replicas on one PostgreSQL database forwarding at once never put
more tasks on a node than it has slots (each forward claims its node's slot in the database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from pyodm import Node

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
