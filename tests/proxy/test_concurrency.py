"""`maxConcurrentTasks` counted from what the cluster knows of task states (spec 2.6), not by asking
a node about every route of the token on each init and commit as ClusterODM does."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import httpx
from pyodm import Node

from support.clusterodm import ClusterODM
from support.simnode import SimNode
from support.waiting import wait_until

from .conftest import ScriptedNode, insert_routes, limits_file


def max_concurrent(limit: int) -> dict[str, str]:
    return {
        "error": f"Reached maximum number of concurrent tasks: {limit}. Please wait until other tasks "
        "have finished, then restart the task."
    }


def init(cluster: ClusterODM, token: str) -> dict[str, str]:
    reply: dict[str, str] = httpx.post(f"{cluster.url}/task/new/init?token={token}", timeout=10).json()
    return reply


def test_limit_counts_queued_and_running_tasks_and_frees_when_they_end(
    tmp_path: Path, module_images: list[str]
) -> None:
    with SimNode(tmp_path, "--processing-seconds", "4", "-q", "1", "--asset-size", "1024") as sim:
        limits = limits_file(tmp_path, '{"maxConcurrentTasks": 2}')
        cluster = ClusterODM(tmp_path, "--no-queue", "--limits", limits, nodes=[sim])
        with cluster.start(wait_nodes=1):
            api = Node(cluster.host, cluster.port, token="alice")
            first, second = api.create_task(module_images), api.create_task(module_images)
            assert init(cluster, "alice") == max_concurrent(2)
            assert "uuid" in init(cluster, "bob")  # another token has its own count
            # A cancelled task frees its slot at once; a restart takes it again.
            first.cancel()
            assert "uuid" in init(cluster, "alice")
            assert first.restart() is True
            assert init(cluster, "alice") == max_concurrent(2)
            # What the cluster knows survives its restart.
            cluster.stop()
            cluster.start(wait_nodes=1)
            assert init(cluster, "alice") == max_concurrent(2)
            # Tasks nobody asks about through the cluster: it finds out by itself when they end.
            for task in (first, second):
                wait_until(
                    lambda t=task: httpx.get(f"{sim.url}/task/{t.uuid}/info").json()["status"]["code"] == 40,
                    15,
                    "task completed on the node",
                )
            wait_until(lambda: "uuid" in init(cluster, "alice"), 5, "slot freed")


def test_init_and_commit_cost_no_node_request_per_route(
    tmp_path: Path, scripted: ScriptedNode, module_images: list[str]
) -> None:
    """10,000 routes of the token on a node that logs every request: init and commit ask it nothing."""
    with SimNode(tmp_path, "--processing-seconds", "0.2") as sim:
        limits = limits_file(tmp_path, '{"maxConcurrentTasks": 1}')
        cluster = ClusterODM(tmp_path, "--no-queue", "--limits", limits, nodes=[sim, scripted])
        routes = [str(uuidlib.uuid4()) for _ in range(10_000)]
        insert_routes(cluster.data_dir, scripted, routes, token="alice")
        with cluster.start(wait_nodes=1):
            task = Node(cluster.host, cluster.port, token="alice").create_task(module_images)
            assert init(cluster, "alice") == max_concurrent(1)
            task.wait_for_completion(interval=0.1)
            assert "uuid" in init(cluster, "alice")
            assert scripted.task_requests() == []
            assert "Loaded 2 nodes, 10000 routes" in cluster.log()


def test_task_list_ends_a_task_removed_behind_the_clusters_back(
    tmp_path: Path, module_images: list[str]
) -> None:
    """A task removed from its node directly stops counting once a task list shows it gone."""
    with SimNode(tmp_path, "--processing-seconds", "30", "--asset-size", "1024") as sim:
        limits = limits_file(tmp_path, '{"maxConcurrentTasks": 1}')
        cluster = ClusterODM(
            tmp_path, "--no-queue", "--limits", limits, nodes=[sim], poll_interval=60
        )  # no re-check
        with cluster.start(wait_nodes=1):
            task = Node(cluster.host, cluster.port, token="alice").create_task(module_images)
            assert init(cluster, "alice") == max_concurrent(1)
            assert httpx.post(f"{sim.url}/task/remove", data={"uuid": task.uuid}).json() == {"success": True}
            assert init(cluster, "alice") == max_concurrent(1)  # nobody told the cluster yet
            assert httpx.get(f"{cluster.url}/task/list?token=alice").json() == []
            assert "uuid" in init(cluster, "alice")


def test_tasks_of_a_dead_node_do_not_block_their_owner(tmp_path: Path, module_images: list[str]) -> None:
    slow = ("--processing-seconds", "30", "--asset-size", "1024")
    with SimNode(tmp_path, *slow, name="sim-a") as a, SimNode(tmp_path, *slow, name="sim-b") as b:
        limits = limits_file(tmp_path, '{"maxConcurrentTasks": 1}')
        cluster = ClusterODM(tmp_path, "--no-queue", "--limits", limits, nodes=[a, b])
        with cluster.start(wait_nodes=2):
            task = Node(cluster.host, cluster.port, token="alice").create_task(module_images)
            assert init(cluster, "alice") == max_concurrent(1)
            holder = next(
                n for n in (a, b) if task.uuid in [t["uuid"] for t in httpx.get(f"{n.url}/task/list").json()]
            )
            holder.stop()
            wait_until(lambda: "uuid" in init(cluster, "alice"), 10, "slot of the dead node's task freed")
