"""Token check, ownership, the local task table, CORS and public paths."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from pyodm import Node

from clusterodm.cluster.store import TaskRecord
from clusterodm.cluster.store_sqlite import SqliteStore
from support.clusterodm import ClusterODM
from support.simnode import SimNode

from .conftest import create_task, insert_routes, limits_file

LOCAL_UUID = "5480a0a0-0000-4000-8000-000000000001"


def test_token_and_ownership(tmp_path: Path, sim: SimNode, module_images: list[str]) -> None:
    mine, theirs = create_task(sim, module_images), create_task(sim, module_images)
    cluster = ClusterODM(tmp_path, "--token", "abc", nodes=[sim])
    insert_routes(cluster.data_dir, sim, [mine], token="abc")
    insert_routes(cluster.data_dir, sim, [theirs], token="someone-else")
    with cluster.start(wait_nodes=1):
        for path in ("/info", f"/task/{mine}/info", "/task/list", "/options"):
            for query in ("", "?token=wrong", "?token=abc&_debugUnauthorized=1"):
                reply = httpx.get(cluster.url + path + query)
                assert (reply.status_code, reply.content) == (401, b""), path + query
        assert httpx.get(f"{cluster.url}/auth/info").json()["loginUrl"] is None
        assert Node(cluster.host, cluster.port, token="abc").get_task(mine).info().uuid == mine
        foreign = httpx.get(f"{cluster.url}/task/{theirs}/info?token=abc").json()
        assert foreign == {"error": f"Invalid route for taskId {theirs}:info, no task table entry."}
        assert httpx.post(f"{cluster.url}/task/cancel?token=abc", data={"uuid": theirs}).json() == {
            "error": f"Invalid route for taskId {theirs}, no nodes in routing table."
        }
        assert httpx.get(f"{cluster.url}/task/list?token=abc").json() == [{"uuid": mine}]


def test_user_token_never_reaches_the_node(tmp_path: Path, module_images: list[str]) -> None:
    with SimNode(tmp_path, "--token", "nodetok", "--processing-seconds", "0.2") as node:
        uuid = create_task(node, module_images, token="nodetok")
        cluster = ClusterODM(tmp_path, "--token", "usertok", nodes=[(node.host, node.port, "nodetok")])
        insert_routes(cluster.data_dir, node, [uuid], token="usertok")
        with cluster.start(wait_nodes=1):
            reply = httpx.get(f"{cluster.url}/task/{uuid}/info?token=usertok&with_output=0")
            assert reply.json()["uuid"] == uuid and isinstance(reply.json()["output"], list)
            # Express makes a repeated token a list, which matches no token: refused (spec 9.7).
            reply = httpx.get(f"{cluster.url}/task/{uuid}/info?token=usertok&token=usertok")
            assert (reply.status_code, reply.content) == (401, b"")


def test_local_task_table_views(tmp_path: Path, sim: SimNode) -> None:
    cluster = ClusterODM(tmp_path, nodes=[sim])
    info = {
        "name": "up",
        "dateCreated": int(time.time() * 1000),
        "status": {"code": 30},
        "options": [],
        "imagesCount": 2,
    }
    now = int(time.time() * 1000)

    async def seed() -> None:
        store = await SqliteStore.open(cluster.data_dir / "clusterodm.sqlite3")
        await store.put_tasks([TaskRecord(LOCAL_UUID, 0, info, ["a", "b", "c"], now, now)])
        await store.close()

    asyncio.run(seed())
    with cluster.start(wait_nodes=1):
        base = f"{cluster.url}/task/{LOCAL_UUID}"
        assert httpx.get(f"{base}/info?with_output=-2").json()["output"] == ["b", "c"]
        plain = httpx.get(f"{base}/info").json()
        assert "output" not in plain and plain["processingTime"] == -1 and plain["uuid"] == LOCAL_UUID
        assert httpx.get(f"{base}/output?line=1").json() == ["b", "c"]
        assert httpx.get(f"{base}/download/all.zip").json() == {
            "error": f"Invalid route for taskId {LOCAL_UUID}:download/all.zip, no valid route possible."
        }
        assert httpx.post(f"{cluster.url}/task/restart", data={"uuid": LOCAL_UUID}).json() == {
            "error": "Action not supported. Please create a new task."
        }
        assert httpx.post(f"{cluster.url}/task/cancel", json={"uuid": LOCAL_UUID}).json() == {"success": True}
        assert httpx.get(f"{base}/info").json()["status"] == {"code": 50}
        assert httpx.get(f"{cluster.url}/task/list").json() == [{"uuid": LOCAL_UUID}]
        assert httpx.post(f"{cluster.url}/task/remove", json={"uuid": LOCAL_UUID}).json() == {"success": True}
        assert "no task table entry" in httpx.get(f"{base}/info").json()["error"]


def test_cors_preflight_and_public_paths(tmp_path: Path, sim: SimNode) -> None:
    with ClusterODM(tmp_path, "--token", "abc", nodes=[sim]).start(wait_nodes=1) as cluster:
        preflight = httpx.options(
            f"{cluster.url}/task/new/init",
            headers={
                "Origin": "https://webodm.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "set-uuid",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://webodm.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert preflight.headers["access-control-allow-methods"] == "POST"
        assert preflight.headers["access-control-allow-headers"] == "set-uuid"
        info = httpx.get(f"{cluster.url}/info?token=abc", headers={"Origin": "http://a.b"})
        assert info.headers.get_list("access-control-allow-origin") == ["http://a.b"]
        assert "access-control-allow-origin" not in httpx.get(f"{cluster.url}/info?token=abc").headers
        # Static files come from the reference node without a token; "/" needs one.
        direct = httpx.get(f"{sim.url}/favicon.ico")
        proxied = httpx.get(f"{cluster.url}/favicon.ico")
        assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content)
        assert httpx.get(f"{cluster.url}/").status_code == 401
        assert httpx.get(f"{cluster.url}/?token=abc").content == httpx.get(f"{sim.url}/").content
        # A static-looking task path is not public (ClusterODM bug 24).
        sneaky = httpx.get(f"{cluster.url}/task/11111111-2222-3333-4444-555555555555/download/x.js")
        assert sneaky.status_code == 401


def test_upload_session_is_stopped_only_by_its_token(tmp_path: Path, sim: SimNode) -> None:
    """Knowing the uuid of an upload in progress is not enough to cancel or remove it."""
    cluster = ClusterODM(tmp_path, "--limits", limits_file(tmp_path), nodes=[sim])
    with cluster.start(wait_nodes=1):
        uuid = httpx.post(f"{cluster.url}/task/new/init?token=alice").json()["uuid"]
        for action in ("cancel", "remove"):
            reply = httpx.post(f"{cluster.url}/task/{action}?token=bob", data={"uuid": uuid}).json()
            assert reply == {"error": f"Invalid route for taskId {uuid}, no nodes in routing table."}
        files = [("images", ("a.jpg", b"\xff\xd8 not much of a jpeg", "image/jpeg"))]
        upload = httpx.post(f"{cluster.url}/task/new/upload/{uuid}?token=alice", files=files).json()
        assert upload == {"success": True}
        reply = httpx.post(f"{cluster.url}/task/remove?token=alice", data={"uuid": uuid}).json()
        assert reply == {"success": True}
        assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}?token=alice", files=files).json() == {
            "error": "Invalid taskId: the task no longer exists."
        }
