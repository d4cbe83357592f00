"""The low-speed watchdog: an attempt on a node that stops reading is aborted and retried elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from pyodm import Node

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.images import make_images
from support.procs import free_port, start_process, stop_process, wait_http
from support.simnode import SimNode
from support.waiting import wait_until

STALL_NODE = Path(__file__).with_name("stallnode.py")
# Shortened watchdog: under 1000 B/s over 1.5 s while a request is in flight counts as stalled.
STALL_ENV = {"CLUSTERODM_STALL_WINDOW_S": "1.5", "CLUSTERODM_STALL_MIN_BPS": "1000"}


def test_stalled_node_is_abandoned_for_another(tmp_path: Path) -> None:
    with SimNode(tmp_path, "--processing-seconds", "0.3", "--asset-size", "1024") as sim:
        port = free_port("127.0.0.1")
        stall = start_process([sys.executable, str(STALL_NODE), str(port), sim.url], tmp_path / "stall.log")
        try:
            wait_http(
                f"http://127.0.0.1:{port}/info", timeout=10, proc=stall, log_path=tmp_path / "stall.log"
            )
            nodes = [("127.0.0.1", port, ""), sim]
            with ClusterODM(tmp_path, nodes=nodes, env=STALL_ENV) as cluster:
                cluster.wait_online(2)
                # 12 MB: more than loopback socket buffers take, so the stalled node really blocks us.
                images = make_images(tmp_path / "imgs", 6, size=2 << 20)
                api = Node(cluster.host, cluster.port)
                tasks = [api.create_task(images, name=f"t{i}") for i in range(2)]
                for task in tasks:
                    task.wait_for_completion(interval=0.2)
                    assert task.info().status.value == 40
                on_sim = [t["uuid"] for t in httpx.get(f"{sim.url}/task/list").json()]
                assert all(task.uuid in on_sim for task in tasks)
                log = cluster.log()
                assert f"127.0.0.1:{port}: upload stalled (under 1000 B/s for 1.5 s)" in log
                wait_until(lambda: tmp_entries(cluster) == [], 5, "tmp empty")
        finally:
            stop_process(stall)
