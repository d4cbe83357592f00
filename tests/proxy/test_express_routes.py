"""Routing as Express does it, since both ClusterODM and NodeODM are Express apps (spec 9.7-9.8):
route names in any case and with one trailing slash, a repeated `token` refused, and a node's
`ETag` / `304 Not Modified` passed through untouched."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.clusterodm import ClusterODM
from support.rawhttp import raw_request
from support.simnode import SimNode

from .conftest import ScriptedNode, create_task, insert_routes, limits_file

MINE = "11111111-1111-4111-8111-111111111111"


def test_routes_match_in_any_case_with_one_trailing_slash(
    tmp_path: Path, sim: SimNode, module_images: list[str]
) -> None:
    uuid = create_task(sim, module_images)
    cluster = ClusterODM(tmp_path, "--token", "abc", nodes=[sim])
    insert_routes(cluster.data_dir, sim, [uuid], token="abc")
    with cluster.start(wait_nodes=1):

        def get(path: str) -> httpx.Response:
            return httpx.get(f"{cluster.url}{path}", params={"token": "abc"})

        assert get("/INFO").json() == get("/info").json() == get("/Info/").json()
        assert get("/Options/").json() == get("/options").json()
        assert get("/Task/List").json() == get("/task/list/").json() == [{"uuid": uuid}]
        for path in (f"/TASK/{uuid}/INFO", f"/task/{uuid}/info/", f"/Task/{uuid}/Info/"):
            assert get(path).json()["uuid"] == uuid, path
        assert get(f"/task/{uuid}/output/").json() == get(f"/task/{uuid}/output").json()
        assert httpx.get(f"{cluster.url}/Auth/Info/").json()["loginUrl"] is None
        # Only one trailing slash, and only route names: other paths are left as they are.
        assert get("/info//").json() == {"error": "Cannot handle /info//"}
        assert get("/InfoX/").json() == {"error": "Cannot handle /InfoX/"}
        assert "Cannot handle" in get(f"/task/{uuid}/info//").json()["error"]
        new = httpx.post(f"{cluster.url}/Task/New/Init/?token=abc").json()
        commit = httpx.post(f"{cluster.url}/TASK/NEW/COMMIT/{new['uuid']}/?token=abc").json()
        assert commit == {"error": "Not enough images (0 files uploaded)"}
        assert httpx.post(f"{cluster.url}/Task/Cancel/?token=abc", data={"uuid": uuid}).json() == {
            "success": True
        }
        # Express makes a repeated `token` a list, which equals no token: refused like a wrong one.
        for path in ("/info", f"/task/{uuid}/info", "/task/list"):
            for query in ("token=abc&token=abc", "token=abc&token=x", "tok%65n=abc&token=abc"):
                reply = httpx.get(f"{cluster.url}{path}?{query}")
                assert (reply.status_code, reply.content) == (401, b""), path + query


def test_etag_and_304_pass_through(tmp_path: Path, scripted: ScriptedNode) -> None:
    """The client's `If-None-Match` reaches the node, and the node's 304 comes back with no body."""
    cluster = ClusterODM(tmp_path, nodes=[scripted])
    insert_routes(cluster.data_dir, scripted, [MINE])
    with cluster.start():
        for action in ("info", "output", "download/all.zip"):
            target = f"/task/{MINE}/{action}"
            first = raw_request(cluster.host, cluster.port, target)
            assert (first.status, first.headers["etag"]) == (200, 'W/"echo"'), action
            assert first.json()["request"] == f"GET {target} HTTP/1.1"
            again = raw_request(cluster.host, cluster.port, target, headers={"If-None-Match": 'W/"echo"'})
            assert (again.status, again.headers["etag"], again.body) == (304, 'W/"echo"', b""), action
            other = raw_request(cluster.host, cluster.port, target, headers={"If-None-Match": 'W/"old"'})
            assert other.status == 200 and other.json()["headers"]["if-none-match"] == 'W/"old"'
        assert len(scripted.task_requests()) == 9


def test_limits_file_makes_tasks_private(tmp_path: Path, scripted: ScriptedNode) -> None:
    """With `--limits` every token is valid, so each is its own account: no token reads another's task."""
    cluster = ClusterODM(tmp_path, "--limits", limits_file(tmp_path), nodes=[scripted])
    insert_routes(cluster.data_dir, scripted, [MINE], token="alice")
    with cluster.start():
        assert httpx.get(f"{cluster.url}/task/{MINE}/info?token=alice").json()["request"].startswith("GET")
        for query in ("?token=bob", ""):
            assert httpx.get(f"{cluster.url}/task/{MINE}/info{query}").json() == {
                "error": f"Invalid route for taskId {MINE}:info, no task table entry."
            }
