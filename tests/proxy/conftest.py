"""Fixtures for proxy tests: simulator nodes with tasks created on them, and routes to those tasks
inserted into clusterodm's SQLite store before clusterodm starts (the pipeline creates them later)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pyodm import Node

from clusterodm.cluster.routing import token_digest
from clusterodm.cluster.store import SqliteStore
from support.images import make_images
from support.simnode import SimNode

FAST = ("--processing-seconds", "0.3")


def insert_routes(data_dir: Path, node: SimNode, uuids: Sequence[str], token: str = "") -> None:
    """Register `node` and route `uuids` to it for the owner `token`, straight in the store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(data_dir / "clusterodm.sqlite3")
    try:
        known = {(r.hostname, r.port): r.id for r in store.load_nodes()}
        node_id = known.get((node.host, node.port))
        if node_id is None:
            node_token = getattr(node, "token", "")
            node_id = store.insert_node(node.host, node.port, node_token, False, None, len(known))
        owner = store.owner_id(token_digest(token), create=True) if token else 0
        assert owner is not None
        now = int(time.time() * 1000)
        store.put_routes([(u, node_id, owner, now) for u in uuids])
    finally:
        store.close()


def create_task(node: SimNode, images: list[str], token: str = "", wait: bool = True) -> str:
    """A task made directly on the simulator with PyODM; waits for completion when asked."""
    task = Node(node.host, node.port, token=token).create_task(images, {"dsm": True}, name="t")
    if wait:
        task.wait_for_completion(interval=0.1)
    return str(task.uuid)


@pytest.fixture(scope="module")
def module_images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return make_images(tmp_path_factory.mktemp("images"), 3)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimNode]:
    with SimNode(tmp_path, *FAST, "-q", "2", "--asset-size", "300000") as node:
        yield node
