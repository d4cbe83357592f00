"""clusterodm in front of a simulator that behaves as NodeODM 2.2.4 at the edges (spec 9.7-9.10):
the node's real ETags and 304s, and all.zip served after a cancel and during a restart."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import httpx

from support.clusterodm import ClusterODM
from support.rawhttp import raw_request
from support.simnode import SimNode

from .conftest import create_task, insert_routes


def express_etag(body: bytes) -> str:
    return f'W/"{len(body):x}-{base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]}"'


def test_routed_info_keeps_the_node_etag_and_gets_its_304(
    tmp_path: Path, sim: SimNode, module_images: list[str]
) -> None:
    """NodeODM's JSON answers carry a weak ETag and a matching If-None-Match gets 304 with no body;
    through clusterodm a routed task info keeps the node's ETag (same body, same tag), in every
    spelling of the path Express accepts, and the client's If-None-Match gets the node's 304."""
    uuid = create_task(sim, module_images)
    direct = raw_request(sim.host, sim.port, f"/task/{uuid}/info")
    assert direct.headers["etag"] == express_etag(direct.body)
    cluster = ClusterODM(tmp_path, nodes=[sim])
    insert_routes(cluster.data_dir, sim, [uuid])
    with cluster.start(wait_nodes=1):
        for target in (f"/task/{uuid}/info", f"/task/{uuid}/info/", f"/TASK/{uuid}/Info"):
            routed = raw_request(cluster.host, cluster.port, target)
            assert (routed.status, routed.body) == (200, direct.body), target
            assert routed.headers["etag"] == direct.headers["etag"], target
            again = raw_request(
                cluster.host, cluster.port, target, headers={"If-None-Match": routed.headers["etag"]}
            )
            assert (again.status, again.body, again.headers.get("etag")) == (304, b"", direct.headers["etag"])
        stale = raw_request(
            cluster.host, cluster.port, f"/task/{uuid}/info", headers={"If-None-Match": 'W/"x"'}
        )
        assert (stale.status, stale.body) == (200, direct.body)
        # A 304 carries no task info: the task must still read as completed afterwards.
        assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["status"] == {"code": 40}


def test_download_after_cancel_and_during_restart_through_the_cluster(
    tmp_path: Path, module_images: list[str]
) -> None:
    """NodeODM serves the existing all.zip after a completed task is cancelled and while a restarted
    task runs again; clusterodm forwards those downloads rather than judging the task's state."""
    with SimNode(tmp_path, "--processing-seconds", "1.5", "--asset-size", "50000") as sim:
        uuid = create_task(sim, module_images)
        cluster = ClusterODM(tmp_path, nodes=[sim])
        insert_routes(cluster.data_dir, sim, [uuid])
        with cluster.start(wait_nodes=1):
            url = f"{cluster.url}/task/{uuid}/download/all.zip"
            before = httpx.get(url).content
            assert len(before) == 50000
            assert httpx.post(f"{cluster.url}/task/cancel", data={"uuid": uuid}).json() == {"success": True}
            assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["status"]["code"] == 50
            assert httpx.get(url).content == before
            assert httpx.post(f"{cluster.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
            deadline = time.monotonic() + 10
            while httpx.get(f"{cluster.url}/task/{uuid}/info").json()["status"]["code"] != 20:
                assert time.monotonic() < deadline, "the restarted task never ran"
                time.sleep(0.02)
            during = httpx.get(url)
            assert during.headers["content-type"] == "application/zip" and during.content == before
