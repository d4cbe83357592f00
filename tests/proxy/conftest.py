"""Fixtures for proxy tests: simulator nodes with tasks created on them, routes to those tasks
inserted into clusterodm's store before clusterodm starts (the pipeline creates them later),
and a scripted node (rawnode.py) that logs what reaches it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest
from pyodm import Node

from clusterodm.cluster.routing import token_digest
from support.clusterodm import open_test_store
from support.images import make_images
from support.procs import free_port, start_process, stop_process, wait_http
from support.simnode import SimNode

FAST = ("--processing-seconds", "0.3")
RAWNODE = Path(__file__).with_name("rawnode.py")


class HasAddress(Protocol):
    host: str
    port: int


class ScriptedNode:
    """rawnode.py as a cluster node: `task_requests()` lists the task request lines it received."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "rawnode.log"
        self.proc = start_process([sys.executable, str(RAWNODE), str(self.port)], self.log_path)
        wait_http(f"http://{self.host}:{self.port}/length/0", proc=self.proc, log_path=self.log_path)

    def task_requests(self) -> list[str]:
        lines = self.log_path.read_text().splitlines()
        return [line for line in lines if line.endswith(" HTTP/1.1") and " /task/" in line]


def limits_file(tmp_path: Path, limits: str = "{}") -> str:
    """`--limits` (none by default): any token is valid then, and tasks belong to their token."""
    path = tmp_path / "limits.json"
    path.write_text(limits)
    return str(path)


def insert_routes(data_dir: Path, node: HasAddress, uuids: Sequence[str], token: str = "") -> None:
    """Register `node` and route `uuids` to it for the owner `token`, straight in the store."""
    data_dir.mkdir(parents=True, exist_ok=True)

    async def seed() -> None:
        store = await open_test_store(data_dir)
        try:
            known = {(r.hostname, r.port): r.id for r in await store.load_nodes()}
            node_id = known.get((node.host, node.port))
            if node_id is None:
                node_token = getattr(node, "token", "")
                node_id = await store.insert_node(node.host, node.port, node_token, False, None, len(known))
            owner = await store.owner_id(token_digest(token), create=True) if token else 0
            assert owner is not None
            now = int(time.time() * 1000)
            await store.put_routes([(u, node_id, owner, now) for u in uuids])
        finally:
            await store.close()

    asyncio.run(seed())


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


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[ScriptedNode]:
    node = ScriptedNode(tmp_path)
    try:
        yield node
    finally:
        stop_process(node.proc)
