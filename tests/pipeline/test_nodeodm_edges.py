"""clusterodm answers NodeODM's edge cases of task creation as the node behind it does (spec 9.4-9.6).

The simulator reproduces NodeODM 2.2.4 there (tests/sim/test_sim_form_edges.py, test_sim_json_errors.py);
these tests send the same probes through a real clusterodm and check its answers and what reaches the node.
"""

from __future__ import annotations

import uuid as uuid_lib
from collections.abc import Callable
from typing import Any

import httpx
from pyodm import Node

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.multipart import multipart
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
NEED_FILE = {"error": "Need at least 1 file.", "noRetry": True}


def post_parts(url: str, parts: list[tuple[str, str | None, bytes]], **headers: str) -> Any:
    body, content_type = multipart(parts)
    return httpx.post(url, content=body, headers={"Content-Type": content_type, **headers}, timeout=10).json()


def finished_on_node(cluster: ClusterODM, uuid: str) -> dict[str, Any]:
    """The task's info once it has reached its node and completed there."""
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.1)
    info: dict[str, Any] = httpx.get(f"{cluster.url}/task/{uuid}/info").json()
    return info


def test_form_edges_through_clusterodm(stack: Stack) -> None:
    """`filename=""` parts are ignored with NodeODM's answers, a 0-byte file is counted, two parts of
    one name in one request leave one file (a later request's becomes `a_.jpg`), an empty `set-uuid`
    header is ignored, and init reads multipart only."""
    [node], cluster = stack(node_flags=[()])
    url = cluster.url
    init = post_parts(f"{url}/task/new/init", [("images", "", b"x"), ("name", None, b"edges")])
    uuid = init["uuid"]
    upload = f"{url}/task/new/upload/{uuid}"
    assert post_parts(upload, [("images", "", b"x" * 5000)]) == NEED_FILE
    assert post_parts(f"{url}/task/new", [("images", "", b"x")]) == {
        "error": "Need at least 1 file or a zip file url."
    }
    assert post_parts(upload, [("images", "empty.jpg", b"")]) == {"success": True}
    same = [("images", "a.jpg", b"first" * 100), ("images", "a.jpg", b"second" * 100)]
    assert post_parts(upload, same) == {"success": True}
    assert post_parts(upload, [("images", "a.jpg", b"third" * 100)]) == {"success": True}
    assert httpx.post(f"{url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    info = finished_on_node(cluster, uuid)
    assert info["imagesCount"] == 3  # empty.jpg, a.jpg, a_.jpg
    images = node.data_dir / "tasks" / uuid / "images"
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "a_.jpg", "empty.jpg"]
    assert (images / "a_.jpg").read_bytes() == b"third" * 100
    assert (images / "empty.jpg").stat().st_size == 0

    reply = httpx.post(f"{url}/task/new/init", headers={"set-uuid": ""}, data={"options": "notjson"})
    assert uuid_lib.UUID(reply.json()["uuid"]).version == 4  # urlencoded fields unread, header ignored
    single = post_parts(f"{url}/task/new", [("images", "b.jpg", b"b" * 10)], **{"set-uuid": ""})
    assert uuid_lib.UUID(single["uuid"]).version == 4


def test_empty_options_fail_at_commit_through_clusterodm(stack: Stack) -> None:
    """`options=""` passes init and fails at commit with `Unexpected end of JSON input`, uploads gone."""
    _, cluster = stack(node_flags=[()])
    uuid = httpx.post(f"{cluster.url}/task/new/init", files={"options": (None, "")}).json()["uuid"]
    upload = f"{cluster.url}/task/new/upload/{uuid}"
    assert post_parts(upload, [("images", "a.jpg", b"a")]) == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {
        "error": "Unexpected end of JSON input"
    }
    wait_until(lambda: tmp_entries(cluster) == [], 10, "uploads removed")
    single = post_parts(f"{cluster.url}/task/new", [("options", None, b""), ("images", "a.jpg", b"a")])
    assert single == {"error": "Unexpected end of JSON input"}


def test_node14_json_error_texts_through_clusterodm(stack: Stack) -> None:
    """NodeODM's Node 14 texts: `options=notjson` -> `Unexpected token o in JSON at position 1`; JSON
    bodies `{bad` and `null` on cancel/remove/restart -> `Unexpected token b|n in JSON at position 1|0`."""
    _, cluster = stack(node_flags=[()])
    init = httpx.post(f"{cluster.url}/task/new/init", files={"options": (None, "notjson")})
    assert init.json() == {"error": "Unexpected token o in JSON at position 1"}
    json_type = {"Content-Type": "application/json"}
    for action in ("cancel", "remove", "restart"):
        url = f"{cluster.url}/task/{action}"
        assert httpx.post(url, content=b"{bad", headers=json_type).json() == {
            "error": "Unexpected token b in JSON at position 1"
        }
        assert httpx.post(url, content=b"null", headers=json_type).json() == {
            "error": "Unexpected token n in JSON at position 0"
        }
