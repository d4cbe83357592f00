"""The admin web's task detail and follow endpoints over real HTTP: secrets masked, output read from
the node or the local table, clear errors for unknown tasks and bad input, a node that went away
reported instead of failing, and all of it behind the admin password."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pyodm import Node as OdmNode

from clusterodm.cluster.routing import token_digest
from clusterodm.cluster.store import TaskRecord
from clusterodm.cluster.store_sqlite import SqliteStore
from support.admin_env import PASSWORD
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode

AUTH = ("admin", PASSWORD)
LOCAL = "7a2b7f4e-3c1d-4d55-9b7a-2a8c4f0e9d22"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
SECRET_OPTIONS = [
    {"name": "dsm", "value": True},
    {"name": "sm-cluster", "value": "http://10.0.0.1:3000/?token=user-secret-1"},
    {"name": "s3-secret-key", "value": "user-secret-2"},
]


@dataclass
class Detail:
    cluster: ClusterODM
    sim: SimNode
    routed: str


def seed(data_dir: Path, sim: SimNode, routed: str) -> None:
    """One route (to `sim`) and one failed local task with secret options, in a fresh store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_seed(data_dir, sim, routed))


async def _seed(data_dir: Path, sim: SimNode, routed: str) -> None:
    store = await SqliteStore.open(data_dir / "clusterodm.sqlite3")
    try:
        node_id = await store.insert_node(sim.host, sim.port, "", False, None, 0)
        owner = await store.owner_id(token_digest(""), create=True) or 0
        now = int(time.time() * 1000)
        await store.put_routes([(routed, node_id, owner, now)])
        info = {
            "uuid": LOCAL,
            "name": "Forward failed",
            "dateCreated": now - 5000,
            "processingTime": -1,
            "status": {"code": 30, "errorMessage": "No nodes available"},
            "options": SECRET_OPTIONS,
            "imagesCount": 3,
            "progress": 0,
        }
        output = ["Launching... please wait!", "Sending to node", "No nodes available"]
        await store.put_tasks([TaskRecord(LOCAL, owner, info, output, now, now)])
    finally:
        await store.close()


@pytest.fixture(scope="module")
def detail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Detail]:
    workdir = tmp_path_factory.mktemp("detail")
    with SimNode(workdir, "--processing-seconds", "600") as sim:
        task = OdmNode(sim.host, sim.port).create_task(make_images(workdir / "images", 2), name="Long")
        cluster = ClusterODM(
            workdir,
            "--admin-pass",
            PASSWORD,
            nodes=[sim],
            poll_interval=30,
            env={"CLUSTERODM_HISTORY_INTERVAL_S": "0.2"},
        )
        seed(cluster.data_dir, sim, task.uuid)
        with cluster.start():
            yield Detail(cluster, sim, task.uuid)


def get(detail: Detail, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{detail.cluster.admin_url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


def last_sample(detail: Detail, after_ms: int) -> dict[str, int]:
    """Status counts of the first sample taken after `after_ms` (server clock: same machine)."""
    deadline = time.monotonic() + 10
    while True:
        history = get(detail, "/r/history", auth=AUTH).json()
        if history["t"] and history["t"][-1] > after_ms:
            return {name: values[-1] for name, values in history["statuses"].items()}
        assert time.monotonic() < deadline, "no new sample"
        time.sleep(0.05)


def test_task_list_reads_are_news(detail: Detail) -> None:
    """First: the routed task was loaded from the store and nobody asked about it yet, so its status
    is unknown; the admin task list reads it from the node, and the charts count it."""
    before = last_sample(detail, int(time.time() * 1000))
    assert before["running"] == 0 and before["failed"] == 1  # the seeded local task
    rows = get(detail, "/r/task/list", auth=AUTH).json()
    assert [r["status"] for r in rows if r["uuid"] == detail.routed] == [20]
    after = last_sample(detail, int(time.time() * 1000))
    assert after["running"] == 1 and after["failed"] == 1


def test_local_task_detail_masks_secrets(detail: Detail) -> None:
    r = get(detail, f"/r/task/{LOCAL}", auth=AUTH)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "user-secret" not in r.text
    task = r.json()
    assert task["options"] == [
        {"name": "dsm", "value": True},
        {"name": "sm-cluster", "value": "http://10.0.0.1:3000/?token=****"},
        {"name": "s3-secret-key", "value": "****"},
    ]
    assert task["heldBy"] == "cluster" and task["node"] is None
    assert task["status"] == 30 and task["errorMessage"] == "No nodes available"
    assert task["output"] == ["Launching... please wait!", "Sending to node", "No nodes available"]
    assert task["outputStart"] == 0 and task["next"] == 3 and task["readError"] is None
    follow = get(detail, f"/r/task/{LOCAL}/output", params={"line": "1"}, auth=AUTH).json()
    assert follow["lines"] == ["Sending to node", "No nodes available"] and follow["next"] == 3
    assert get(detail, f"/r/task/{LOCAL}/output", params={"line": "3"}, auth=AUTH).json()["lines"] == []


def test_routed_task_is_read_from_its_node(detail: Detail) -> None:
    task = get(detail, f"/r/task/{detail.routed}", auth=AUTH).json()
    assert task["heldBy"] == "node" and task["node"] == f"{detail.sim.host}:{detail.sim.port}"
    assert task["nodeNumber"] == 1 and task["name"] == "Long" and task["status"] == 20
    assert task["readError"] is None and task["next"] == len(task["output"])
    # What the node answered is news the cluster keeps: the status is on the timeline.
    assert [(c["status"], c["where"]) for c in task["timeline"]] == [(20, task["node"])]
    follow = get(detail, f"/r/task/{detail.routed}/output", params={"line": "0"}, auth=AUTH).json()
    assert follow["status"] == 20 and follow["next"] == len(follow["lines"]) >= task["next"]


def test_unknown_task_and_bad_line(detail: Detail) -> None:
    r = get(detail, f"/r/task/{UNKNOWN}", auth=AUTH)
    assert r.status_code == 404 and r.json() == {"error": f"No task {UNKNOWN} is known to this cluster"}
    assert get(detail, f"/r/task/{UNKNOWN}/output", auth=AUTH).status_code == 404
    r = get(detail, f"/r/task/{LOCAL}/output", params={"line": "-5"}, auth=AUTH)
    assert r.status_code == 400 and "line must be a number" in r.json()["error"]


def test_history_shape(detail: Detail) -> None:
    history = get(detail, "/r/history", auth=AUTH).json()
    assert history["windowMs"] == 3_600_000 and history["intervalMs"] == 200
    assert len(history["t"]) >= 1  # sampled once at start
    assert set(history["statuses"]) == {"queued", "running", "failed", "completed", "canceled"}
    assert len(history["uploadRate"]) == len(history["t"]) == len(history["statuses"]["failed"])
    assert history["statuses"]["failed"][-1] == 1  # the seeded local task
    assert [n["name"] for n in history["nodes"]] == [f"{detail.sim.host}:{detail.sim.port}"]


@pytest.mark.parametrize("path", ["/r/history", f"/r/task/{LOCAL}", f"/r/task/{LOCAL}/output"])
def test_admin_password_is_required(detail: Detail, path: str) -> None:
    r = get(detail, path)
    assert r.status_code == 401 and "user-secret" not in r.text
    assert get(detail, path, auth=("admin", "wrong")).status_code == 401


def test_node_gone_is_reported_not_failed(detail: Detail) -> None:
    """Last: stops the node. The view still answers, saying why the node could not be read."""
    detail.sim.stop()
    r = get(detail, f"/r/task/{detail.routed}", auth=AUTH)
    assert r.status_code == 200
    task = r.json()
    assert task["heldBy"] == "node" and task["output"] == [] and task["readError"]
    assert [c["status"] for c in task["timeline"]] == [20]  # what was heard before stays
    follow = get(detail, f"/r/task/{detail.routed}/output", params={"line": "4"}, auth=AUTH).json()
    assert follow["lines"] == [] and follow["next"] == 4 and follow["readError"]
