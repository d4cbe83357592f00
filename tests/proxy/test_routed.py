"""PyODM through the proxy on tasks routed to simulator nodes (routes inserted in the store)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import NodeResponseError

from support.clusterodm import ClusterODM
from support.simnode import SimNode

from .conftest import FAST, create_task, insert_routes

pytestmark = pytest.mark.both_backends  # on SQLite and on PostgreSQL: ids [sqlite], [pg]


def test_pyodm_info_options_list_output_download(
    tmp_path: Path, sim: SimNode, module_images: list[str]
) -> None:
    uuid = create_task(sim, module_images)
    cluster = ClusterODM(tmp_path, nodes=[sim])
    insert_routes(cluster.data_dir, sim, [uuid])
    with cluster.start(wait_nodes=1):
        node = Node(cluster.host, cluster.port)
        info = node.info()
        assert info.version == "1.5.3" and info.engine == "odm" and info.engine_version == "3.5.1"
        assert info.max_parallel_tasks == 99999999999
        assert [o.name for o in node.options()] == [o.name for o in Node(sim.host, sim.port).options()]
        assert httpx.get(f"{cluster.url}/task/list").json() == [{"uuid": uuid}]
        task = node.get_task(uuid)
        task_info = task.info(with_output=-2)
        assert task_info.status.value == 40 and task_info.images_count == 3
        assert len(task_info.output) == 2
        assert task.output(line=-1) == Node(sim.host, sim.port).get_task(uuid).output(line=-1)
        zip_path = task.download_zip(str(tmp_path / "dl"))
        assert Path(zip_path).stat().st_size == 300000
        plain = httpx.get(f"{cluster.url}/task/{uuid}/download/all.zip")
        assert plain.headers["content-length"] == "300000"
        assert plain.headers["content-disposition"] == "attachment; filename=all.zip"


@pytest.mark.parametrize("encoding", ["form", "json", "multipart"])
def test_cancel_restart_remove_bodies(
    tmp_path: Path, sim: SimNode, module_images: list[str], encoding: str
) -> None:
    uuid = create_task(sim, module_images)
    cluster = ClusterODM(tmp_path, nodes=[sim])
    insert_routes(cluster.data_dir, sim, [uuid])

    def post(action: str, fields: dict[str, str]) -> dict[str, object]:
        url = f"{cluster.url}/task/{action}"
        if encoding == "json":
            return httpx.post(url, json=fields).json()
        if encoding == "multipart":
            return httpx.post(url, files={k: (None, v) for k, v in fields.items()}).json()
        return httpx.post(url, data=fields).json()

    with cluster.start(wait_nodes=1):
        assert post("restart", {"uuid": uuid, "options": '[{"name":"dsm","value":false}]'}) == {
            "success": True
        }
        direct = Node(sim.host, sim.port).get_task(uuid).info()
        assert {"name": "dsm", "value": False} in direct.options
        assert post("cancel", {"uuid": uuid}) == {"success": True}
        assert Node(sim.host, sim.port).get_task(uuid).info().status.value == 50
        assert post("restart", {"uuid": uuid, "options": '[{"name":"mesh-octree-depth","value":99}]'})[
            "error"
        ]
        assert post("remove", {"uuid": uuid}) == {"success": True}
        assert post("remove", {"uuid": uuid}) == {
            "error": f"Invalid route for taskId {uuid}, no nodes in routing table."
        }
        assert post("cancel", {}) == {"error": "No uuid found in /task/cancel"}


def test_pyodm_cancel_restart_remove(tmp_path: Path, module_images: list[str]) -> None:
    with SimNode(tmp_path, "--processing-seconds", "30") as slow:
        uuid = create_task(slow, module_images, wait=False)
        cluster = ClusterODM(tmp_path, nodes=[slow])
        insert_routes(cluster.data_dir, slow, [uuid])
        with cluster.start(wait_nodes=1):
            task = Node(cluster.host, cluster.port).get_task(uuid)
            assert task.cancel() is True
            assert task.info().status.value == 50
            assert task.restart() is True
            assert task.info().status.value in (10, 20)
            assert task.remove() is True
            with pytest.raises(NodeResponseError, match="no task table entry"):
                task.info()


def test_unknown_uuid_and_malformed_paths(tmp_path: Path, sim: SimNode) -> None:
    with ClusterODM(tmp_path, nodes=[sim]).start(wait_nodes=1) as cluster:
        unknown = "11111111-2222-3333-4444-555555555555"
        assert httpx.get(f"{cluster.url}/task/{unknown}/info").json() == {
            "error": f"Invalid route for taskId {unknown}:info, no task table entry."
        }
        assert httpx.get(f"{cluster.url}/task/{unknown}/download/all.zip").json() == {
            "error": f"Invalid route for taskId {unknown}:download/all.zip, no task table entry."
        }
        for path in ("/task/not-a-uuid/info", "/task/a-b-c-d-e/", "/task//info", "/nope", "/task"):
            reply = httpx.get(cluster.url + path)
            assert reply.status_code == 200
            assert "error" in reply.json(), path
        assert httpx.get(f"{cluster.url}/nope").json() == {"error": "Cannot handle /nope"}


def test_node_offline_and_back_and_restart_keeps_routes(tmp_path: Path, module_images: list[str]) -> None:
    node = SimNode(tmp_path, *FAST).start()
    try:
        uuid = create_task(node, module_images)
        cluster = ClusterODM(tmp_path, nodes=[node])
        insert_routes(cluster.data_dir, node, [uuid])
        with cluster.start(wait_nodes=1):
            url = f"{cluster.url}/task/{uuid}/info"
            assert httpx.get(url).json()["uuid"] == uuid
            node.stop()
            # Connection refused while proxying: the client connection is dropped (clients retry).
            with pytest.raises(httpx.HTTPError):
                httpx.get(url).raise_for_status()
            node.start()
            # Back on the same port: the route works again and passes the node's answer through.
            direct = httpx.get(f"{node.url}/task/{uuid}/info").json()
            assert httpx.get(url).json() == direct
        with cluster.start(wait_nodes=1):  # a restarted clusterodm still knows the route
            assert httpx.get(f"{cluster.url}/task/{uuid}/info").json() == direct
            assert "no task table entry" not in httpx.get(f"{cluster.url}/task/{uuid}/output").text
    finally:
        node.stop()
