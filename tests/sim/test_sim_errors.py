"""The simulator's error dialect, each asserting NodeODM's exact message."""

from __future__ import annotations

import json
import time
import uuid as uuid_lib
from collections.abc import Callable

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import NodeResponseError

from support.paths import TEST_DATA
from support.simnode import SimNode

JSON_TYPE = "application/json; charset=utf-8"


def test_info_and_options_match_captures(sim: SimNode) -> None:
    captured = json.loads((TEST_DATA / "nodeodm-info.json").read_text())
    reply = httpx.get(f"{sim.url}/info")
    assert reply.headers["content-type"] == JSON_TYPE
    assert reply.headers["access-control-allow-origin"] == "*"
    info = reply.json()
    assert list(info) == list(captured)
    assert info["version"] == "2.2.4" and info["maxImages"] is None and info["maxParallelTasks"] == 2
    options = httpx.get(f"{sim.url}/options").json()
    assert options == json.loads((TEST_DATA / "nodeodm-options.json").read_text())


def test_token_auth_and_latency(start_sim: Callable[..., SimNode]) -> None:
    sim = start_sim("--token", "s3cret", "--latency-ms", "150")
    with pytest.raises(NodeResponseError, match="^Invalid authentication token: token does not match.$"):
        Node(sim.host, sim.port, token="wrong").info()
    assert httpx.get(f"{sim.url}/task/list").json() == {
        "error": "Invalid authentication token: token does not match."
    }
    started = time.monotonic()
    assert Node(sim.host, sim.port, token="s3cret").info().version == "2.2.4"
    assert time.monotonic() - started >= 0.15
    assert (
        httpx.get(f"{sim.url}/info", params={"token": "s3cret", "_debugUnauthorized": "1"}).status_code == 401
    )
    assert httpx.get(f"{sim.url}/auth/info").json()["message"] == "Authentication not available on this node"
    assert httpx.post(f"{sim.url}/auth/login").json() == {"error": "Not available"}


def test_bad_options_exact_error(sim: SimNode, images: list[str]) -> None:
    expected = (
        '[{"name":"mesh-octree-depth","error":"Invalid value 99 (out of range)"},'
        '{"name":"dsm","error":"Cannot convert maybe to boolean"}]'
    )
    with pytest.raises(NodeResponseError) as caught:
        Node(sim.host, sim.port).create_task(images[:1], {"dsm": "maybe", "mesh-octree-depth": 99})
    assert str(caught.value) == expected
    reply = httpx.post(f"{sim.url}/task/new/init", files={"options": (None, "[{nope")})
    assert reply.json() == {"error": "Unexpected token n in JSON at position 2"}


def test_too_many_images(start_sim: Callable[..., SimNode], images: list[str]) -> None:
    sim = start_sim("--max-images", "5", "--processing-seconds", "0.1")
    node = Node(sim.host, sim.port)
    assert node.info().max_images == 5
    task = node.create_task(images[:7])  # chunked: commit succeeds, the task fails during init
    deadline = time.monotonic() + 5
    while (info := httpx.get(f"{sim.url}/task/{task.uuid}/info").json())["status"]["code"] != 30:
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info["status"]["errorMessage"] == "7 images uploaded, but this node can only process up to 5."
    with pytest.raises(
        NodeResponseError, match=r"^6 images uploaded, but this node can only process up to 5\.$"
    ):
        node.create_task_fallback(images[:6])
    assert node.create_task(images[:5]).info().images_count == 5


def test_set_uuid(sim: SimNode, images: list[str]) -> None:
    node = Node(sim.host, sim.port)
    with pytest.raises(NodeResponseError, match="^Invalid set-uuid: not-a-uuid$"):
        node.create_task(images[:1], task_uuid="not-a-uuid")
    wanted = str(uuid_lib.uuid4()).upper()
    assert node.create_task(images[:1], task_uuid=wanted).uuid == wanted
    with pytest.raises(NodeResponseError, match=f"^Invalid set-uuid: {wanted}$"):
        node.create_task(images[:1], task_uuid=wanted)


def test_unknown_uuid(sim: SimNode) -> None:
    ghost = str(uuid_lib.uuid4())
    assert httpx.get(f"{sim.url}/task/{ghost}/info").json() == {"error": f"{ghost} not found"}
    assert httpx.get(f"{sim.url}/task/{ghost}/output").json() == {"error": f"{ghost} not found"}
    upload = httpx.post(f"{sim.url}/task/new/upload/{ghost}", files={"images": ("a.jpg", b"x")})
    assert upload.json() == {"error": "Invalid uuid (not found)"}
    assert httpx.post(f"{sim.url}/task/new/commit/{ghost}").json() == {"error": "Invalid uuid (not found)"}
    assert httpx.post(f"{sim.url}/task/cancel", data={"uuid": ghost}).json() == {
        "success": False,
        "error": f"{ghost} not found",
    }


def test_upload_errors(sim: SimNode) -> None:
    uuid = httpx.post(f"{sim.url}/task/new/init", files={"name": (None, "e")}).json()["uuid"]
    empty = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"other": (None, "v")})
    assert empty.headers["content-type"] == JSON_TYPE
    assert empty.json() == {"error": "Need at least 1 file.", "noRetry": True}
    wrong_field = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"file": ("a.jpg", b"x" * 100000)})
    assert wrong_field.json() == {"error": "Unexpected field"}
    assert not any((sim.data_dir / "tmp" / uuid).glob("a*.jpg"))  # partial upload removed
    init_file = httpx.post(f"{sim.url}/task/new/init", files={"images": ("a.jpg", b"x")})
    assert init_file.json() == {"error": "Unexpected field"}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"error": "Need at least 1 file."}
    assert httpx.post(f"{sim.url}/task/new").json() == {"error": "Need at least 1 file or a zip file url."}


def test_cancel_body_parsing(sim: SimNode) -> None:
    multipart = httpx.post(f"{sim.url}/task/cancel", files={"uuid": (None, "abc")})
    assert multipart.json() == {"error": "uuid param missing."}
    assert httpx.post(f"{sim.url}/task/remove").json() == {"error": "uuid param missing."}
    assert httpx.post(f"{sim.url}/task/cancel", json={"uuid": "abc"}).json() == {
        "success": False,
        "error": "abc not found",
    }


def test_restart_invalid_options(sim: SimNode, images: list[str]) -> None:
    task = Node(sim.host, sim.port).create_task(images[:1])
    task.wait_for_completion(interval=0.1)
    reply = httpx.post(
        f"{sim.url}/task/restart",
        data={"uuid": task.uuid, "options": '[{"name":"feature-type","value":"surf"}]'},
    )
    assert reply.json() == {"error": '[{"name":"feature-type","error":"Invalid value surf (not in enum)"}]'}


def test_http_level_details(sim: SimNode, images: list[str]) -> None:
    missing = httpx.get(f"{sim.url}/x")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "text/html; charset=utf-8"
    assert "<pre>Cannot GET /x</pre>" in missing.text
    assert "<pre>Cannot GET /task/new</pre>" in httpx.get(f"{sim.url}/task/new").text
    preflight = httpx.options(
        f"{sim.url}/task/new/init",
        headers={
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "set-uuid",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-headers"] == "set-uuid"
    task = Node(sim.host, sim.port).create_task(images[:1])
    assert httpx.get(f"{sim.url}/task/{task.uuid}/download/orthophoto.tif").json() == {
        "error": "Invalid asset"
    }
    assert httpx.get(f"{sim.url}/task/{task.uuid}/download").status_code == 404


def test_dropped_uploads_are_retried(start_sim: Callable[..., SimNode], images: list[str]) -> None:
    sim = start_sim("--drop-uploads", "0.3", "--seed", "7", "--processing-seconds", "0.1")
    task = Node(sim.host, sim.port).create_task(images, parallel_uploads=1, retry_timeout=0)
    assert task.info().images_count == 30
    assert sim.log().count("dropped upload") >= 3
    task.wait_for_completion(interval=0.1)


def test_webhooks(start_sim: Callable[..., SimNode], webhook_receiver: Callable, images: list[str]) -> None:
    node_wide = webhook_receiver()
    per_task = webhook_receiver(fail_first=1)
    sim = start_sim(
        "--processing-seconds", "0.1", "--webhook", f"{node_wide.url}/node", "--webhook-retry-seconds", "0.1"
    )
    task = Node(sim.host, sim.port).create_task(images[:2], webhook=f"{per_task.url}/task")
    [payload] = node_wide.wait_for(1)
    assert payload["uuid"] == task.uuid and payload["status"] == {"code": 40}
    assert payload["progress"] == 100 and payload["imagesCount"] == 2
    assert [image["filename"] for image in payload["images"]] == ["IMG_0000.JPG", "IMG_0001.JPG"]
    first, retried = per_task.wait_for(2)
    assert first == retried == payload
