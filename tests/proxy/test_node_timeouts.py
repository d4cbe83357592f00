"""A node that accepts and never answers, through a real clusterodm: the client gets a NodeODM-style
error naming the node within the configured limit (well inside PyODM's 30 s by default), a stalled
download is broken off, and the node's connections are closed, not leaked."""

from __future__ import annotations

import sys
import time
import uuid as uuid_lib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import NodeResponseError

from support.clusterodm import ClusterODM
from support.procs import free_port, start_process, stop_process, wait_http

from .conftest import insert_routes

ENDLESS_NODE = Path(__file__).with_name("endlessnode.py")
LIMITS = {"CLUSTERODM_NODE_ANSWER_TIMEOUT_S": "1", "CLUSTERODM_NODE_IDLE_TIMEOUT_S": "1"}


@pytest.fixture
def silent_node(tmp_path: Path) -> Iterator[SimpleNamespace]:
    port = free_port()
    log = tmp_path / "endless.log"
    proc = start_process([sys.executable, str(ENDLESS_NODE), str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/info", proc=proc, log_path=log)
        yield SimpleNamespace(host="127.0.0.1", port=port, url=f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc)


def wait_released(node: SimpleNamespace, count: int) -> None:
    """Until the node saw `count` silent requests closed by the proxy and holds none."""
    deadline = time.monotonic() + 5
    while httpx.get(f"{node.url}/silent-stats").json() != {"held": 0, "closed_by_peer": count}:
        assert time.monotonic() < deadline, httpx.get(f"{node.url}/silent-stats").json()
        time.sleep(0.02)


def test_node_that_never_answers_gets_a_json_error_naming_it(
    tmp_path: Path, silent_node: SimpleNamespace
) -> None:
    uuid = str(uuid_lib.uuid4())
    cluster = ClusterODM(tmp_path, nodes=[silent_node], env=LIMITS)
    insert_routes(cluster.data_dir, silent_node, [uuid])  # type: ignore[arg-type]
    name = f"{silent_node.host}:{silent_node.port}"
    expected = {"error": f"Proxy redirect error: {name}: the node did not answer within 1 s"}
    with cluster.start(wait_nodes=1):
        for action in ("info", "output?line=0"):
            asked = time.monotonic()
            reply = httpx.get(f"{cluster.url}/task/{uuid}/{action}", timeout=10)
            took = time.monotonic() - asked
            assert (reply.status_code, reply.json()) == (200, expected)
            assert reply.headers["content-type"] == "application/json"
            assert 0.9 < took < 3, took
        # PyODM reads it as the node's error, not as its own timeout.
        with pytest.raises(NodeResponseError, match=f"{name}: the node did not answer"):
            Node(cluster.host, cluster.port, timeout=10).get_task(uuid).info()
        wait_released(silent_node, 3)
        assert "did not answer within 1 s" in cluster.log()


def test_stalled_download_is_broken_off_after_the_idle_limit(
    tmp_path: Path, silent_node: SimpleNamespace
) -> None:
    uuid = str(uuid_lib.uuid4())
    cluster = ClusterODM(tmp_path, nodes=[silent_node], env=LIMITS)
    insert_routes(cluster.data_dir, silent_node, [uuid])  # type: ignore[arg-type]
    with cluster.start(wait_nodes=1):
        received = 0
        asked = time.monotonic()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("GET", f"{cluster.url}/task/{uuid}/download/stalled.zip", timeout=10) as reply,
        ):
            assert reply.headers["content-length"] == "1048576"
            for chunk in reply.iter_raw():
                received += len(chunk)
        took = time.monotonic() - asked
        assert received == 65536
        assert 0.9 < took < 3, took
        wait_released(silent_node, 1)
        # The proxy still serves: the next request gets its answer (here: the node's silence again).
        reply = httpx.get(f"{cluster.url}/task/{uuid}/info", timeout=10)
        assert "did not answer within 1 s" in reply.json()["error"]
