"""Task creation through clusterodm with PyODM: chunked and single shot, limits, double commit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import NodeResponseError

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]


def node_uuids(nodes: list[SimNode]) -> dict[int, list[str]]:
    return {n.port: [t["uuid"] for t in httpx.get(f"{n.url}/task/list").json()] for n in nodes}


@pytest.mark.both_backends  # the task table and routes on both stores (ids [sqlite], [pg])
def test_chunked_200_images_complete_and_download(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack()
    images = make_images(tmp_path / "imgs", 200, size=1024)
    task = Node(cluster.host, cluster.port).create_task(images, {"dsm": True}, name="chunked")
    task.wait_for_completion(interval=0.2)
    info = task.info()
    assert info.status.value == 40
    assert info.images_count == 200
    owners = [port for port, uuids in node_uuids(nodes).items() if task.uuid in uuids]
    assert len(owners) == 1
    out = task.download_assets(str(tmp_path / "out"))
    assert Path(out).is_dir() and any(Path(out).iterdir())
    assert tmp_entries(cluster) == []


@pytest.mark.both_backends  # the task table and routes on both stores (ids [sqlite], [pg])
def test_single_shot_200_images(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack()
    images = make_images(tmp_path / "imgs", 200, size=1024)
    files = [("images", (Path(p).name, open(p, "rb"), "image/jpeg")) for p in images]
    try:
        reply = httpx.post(f"{cluster.url}/task/new", files=files, data={"name": "shot"}, timeout=30).json()
    finally:
        for _, (_, handle, _) in files:
            handle.close()
    task = Node(cluster.host, cluster.port).get_task(reply["uuid"])
    task.wait_for_completion(interval=0.2)
    assert task.info().images_count == 200
    assert task.info().name == "shot"
    wait_until(lambda: tmp_entries(cluster) == [], 5, "tmp empty")


def test_double_commit_is_refused(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack()
    images = make_images(tmp_path / "imgs", 3)
    uuid = httpx.post(f"{cluster.url}/task/new/init", files={"name": (None, "x")}).json()["uuid"]
    with open(images[0], "rb") as f:
        up = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files={"images": ("a.jpg", f)}).json()
    assert up == {"success": True}
    first = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    second = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    assert first == {"uuid": uuid}
    assert "error" in second
    Node(cluster.host, cluster.port).get_task(uuid).wait_for_completion(interval=0.2)
    assert tmp_entries(cluster) == []


def test_bad_options_exact_error(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack()
    images = make_images(tmp_path / "imgs", 2)
    try:
        Node(cluster.host, cluster.port).create_task(images, {"mesh-octree-depth": 99})
    except NodeResponseError as exc:
        assert str(exc) == json.dumps(
            [{"name": "mesh-octree-depth", "error": "Invalid value 99 (out of range)"}], separators=(",", ":")
        )
    else:
        raise AssertionError("bad options were accepted")
    assert tmp_entries(cluster) == []


def test_unexpected_field_and_set_uuid(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack()
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    bad = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files={"other": ("a.jpg", b"x" * 10)}).json()
    assert bad == {"error": "Unexpected field"}
    again = httpx.post(f"{cluster.url}/task/new/init", headers={"set-uuid": uuid}).json()
    assert again == {"error": f"Invalid set-uuid: {uuid}"}
    v7 = "01890a5d-ac96-774b-bcce-b302099a8057"
    assert httpx.post(f"{cluster.url}/task/new/init", headers={"set-uuid": v7}).json() == {"uuid": v7}
    assert sorted(tmp_entries(cluster)) == sorted([uuid, v7])
    assert not list((cluster.tmp_dir / uuid / "files").glob("*.jpg"))


def test_malformed_multipart_is_a_json_error_and_loses_nothing(stack: Stack) -> None:
    """A broken body gets NodeODM's JSON error; the files before it and the session stay usable."""
    (node,), cluster = stack(node_flags=[()])
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    boundary = "brokenB0undary"

    def part(name: str, data: bytes) -> bytes:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n\r\n'
        return head.encode() + data + b"\r\n"

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    body = part("a.jpg", b"a" * 5000) + f"--{boundary}garbage\r\n".encode() + b"b" * 5000
    reply = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", content=body, headers=headers).json()
    assert reply["error"].startswith("Multipart: malformed boundary line"), reply
    assert not list((cluster.tmp_dir / uuid / "partial").glob("*"))
    good = part("b.jpg", b"b" * 5000) + f"--{boundary}--\r\n".encode()
    ok = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", content=good, headers=headers).json()
    assert ok == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().images_count == 2
    images = node.data_dir / "tasks" / uuid / "images"
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "b.jpg"]
    assert tmp_entries(cluster) == []
