"""Split-merge submodels come back through clusterodm's queue (issue 14, ClusterODM issue 74).

Real processes over loopback: the parent task runs on one of three one-slot simulator nodes and
sends its submodels to the `sm-cluster` clusterodm injected, i.e. to clusterodm itself; they wait
in its queue and the two other nodes take them one at a time as they finish.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from pipeline.test_queue import COMPLETED, ONE_SLOT, QUEUED, Stack, Watcher, create, info
from support.images import make_images
from support.waiting import wait_until


def node_task_names(url: str) -> list[str]:
    listed = httpx.get(f"{url}/task/list").json()
    return sorted(httpx.get(f"{url}/task/{t['uuid']}/info").json()["name"] for t in listed)


def test_submodels_wait_in_the_queue_and_refill_the_nodes(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(node_flags=[ONE_SLOT] * 3)
    images = make_images(tmp_path / "imgs", 8)
    parent = create(cluster, images, name="sm sim-seconds=1.5", options={"split": 2})
    assert "uuid" in parent, parent
    uuids = [parent["uuid"]]
    with Watcher(cluster, nodes, uuids) as watcher:

        def listed_all() -> bool:
            # Submodels appear in the cluster's task list as the parent creates them.
            for task in httpx.get(f"{cluster.url}/task/list").json():
                if task["uuid"] not in uuids:
                    uuids.append(task["uuid"])
            return len(uuids) == 5

        wait_until(listed_all, 30, "four submodels created through clusterodm")
        wait_until(watcher.all_done, 60, "parent and submodels done")
    assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
    names = sorted(info(cluster, u).get("name", "") for u in uuids[1:])
    assert names == [f"sm sim-seconds=1.5 submodel {i}" for i in range(4)]
    assert any(watcher.statuses[u][0] == QUEUED for u in uuids[1:]), watcher.statuses
    assert watcher.most_on_a_node == 1
    assert all(node.load()["maxQueueCount"] == 1 for node in nodes)
    per_node = [node_task_names(node.url) for node in nodes]
    # The parent keeps its node; the other two run the four submodels one at a time, so a node
    # that finished a submodel was given the next one.
    assert sum(names == ["sm sim-seconds=1.5"] for names in per_node) == 1, per_node
    assert sum(len(names) for names in per_node) == 5, per_node
