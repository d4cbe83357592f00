"""A node removed by an operator takes nothing with it: its tasks' final state stays readable."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pyodm import Node

from support.clusterodm import ClusterODM
from support.simnode import SimNode

from .conftest import create_task, insert_routes

pytestmark = pytest.mark.both_backends  # on SQLite and on PostgreSQL: ids [sqlite], [pg]


def test_removed_node_leaves_its_tasks_readable(tmp_path: Path, module_images: list[str]) -> None:
    with (
        SimNode(tmp_path, "--processing-seconds", "0.2") as done_node,
        SimNode(tmp_path, "--processing-seconds", "600", name="busy") as busy_node,
    ):
        finished = create_task(done_node, module_images)
        running = create_task(busy_node, module_images, wait=False)
        cluster = ClusterODM(tmp_path, nodes=[done_node, busy_node])
        insert_routes(cluster.data_dir, done_node, [finished])
        insert_routes(cluster.data_dir, busy_node, [running])
        with cluster.start(wait_nodes=2):
            admin = cluster.admin_url
            headers = {"Origin": admin, "Content-Type": "application/json"}
            for number in (2, 1):  # busy node first, then the finished one (numbers shift)
                reply = httpx.request("DELETE", f"{admin}/r/node", json={"number": number}, headers=headers)
                assert reply.json() is True
            assert httpx.get(f"{admin}/r/node/list").json() == []

            node = Node(cluster.host, cluster.port)
            done = node.get_task(finished).info(with_output=-3)
            assert done.status.value == 40 and done.images_count == 3 and len(done.output) == 3
            stopped = node.get_task(running).info()
            assert stopped.status.value == 30
            busy = f"{busy_node.host}:{busy_node.port}"
            reason = "removed from the admin web"
            assert stopped.last_error == f"Node {busy} was removed from the cluster ({reason})"
            assert sorted(t["uuid"] for t in httpx.get(f"{cluster.url}/task/list").json()) == sorted(
                [finished, running]
            )
        # Kept durably: a restart still answers from the task table.
        with cluster.start():
            assert Node(cluster.host, cluster.port).get_task(finished).info().status.value == 40
