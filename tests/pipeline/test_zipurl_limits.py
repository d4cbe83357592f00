"""clusterodm with NodeODM's `zipurl` and image limit (spec 9.2, 9.3), against simulator nodes that
download, unzip and count the way NodeODM 2.2.4 does (tests/sim/test_sim_zipurl_limits.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.fileserver import FileServer
from support.images import make_images, zip_bytes
from support.multipart import multipart
from support.procs import free_port
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]


def status_through(cluster: ClusterODM, uuid: str, codes: set[int], timeout: float = 20.0) -> dict[str, Any]:
    """The task's info through clusterodm once its status is one of `codes`."""

    def info() -> dict[str, Any] | None:
        reply: dict[str, Any] = httpx.get(f"{cluster.url}/task/{uuid}/info", timeout=5).json()
        return reply if reply.get("status", {}).get("code") in codes else None

    return wait_until(info, timeout, f"task {uuid} in status {codes}")  # type: ignore[return-value]


def test_zipurl_through_clusterodm(stack: Stack, tmp_path: Path) -> None:
    """A zipurl task reaches its node, which downloads and unzips the archive and completes it; an
    unreachable URL fails on the node as NodeODM fails it (`connect ECONNREFUSED ...`), and clusterodm
    shows that same status."""
    [node], cluster = stack(node_flags=[()])
    images = [Path(p) for p in make_images(tmp_path / "z", 3)]
    archive = zip_bytes({p.name: p.read_bytes() for p in images} | {"gcp_list.txt": b"EPSG:4326\n"})
    with FileServer({"/set.zip": archive}) as server:
        reply = httpx.post(f"{cluster.url}/task/new", files={"zipurl": (None, server.url("/set.zip"))})
        uuid = reply.json()["uuid"]
        info = status_through(cluster, uuid, {30, 40})
        assert info["status"] == {"code": 40} and info["imagesCount"] == 3
        assert (node.data_dir / "tasks" / uuid / "gcp" / "gcp_list.txt").is_file()

    port = free_port()
    reply = httpx.post(f"{cluster.url}/task/new", files={"zipurl": (None, f"http://127.0.0.1:{port}/x.zip")})
    uuid = reply.json()["uuid"]
    info = status_through(cluster, uuid, {30, 40})
    assert info["status"] == {"code": 30, "errorMessage": f"connect ECONNREFUSED 127.0.0.1:{port}"}
    assert (node.data_dir / "tasks" / uuid).is_dir()  # it failed on the node, not in the forward
    assert httpx.post(f"{cluster.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    wait_until(lambda: tmp_entries(cluster) == [], 10, "tmp empty")


def test_nodes_are_chosen_by_the_files_they_count(stack: Stack, tmp_path: Path) -> None:
    """A node with maxImages 5 counts 5 images + `gcp_list.txt` as 6 and would fail the task:
    clusterodm sends such tasks to the node that can take 6 files, every time; clusterodm's own
    imagesCount for them is 5 (images only)."""
    nodes, cluster = stack(node_flags=[("--max-images", "5"), ("--max-images", "6")])
    small, large = nodes
    images = make_images(tmp_path / "i", 5)
    parts: list[tuple[str, str | None, bytes]] = [
        ("images", Path(p).name, Path(p).read_bytes()) for p in images
    ]
    parts.append(("images", "gcp_list.txt", b"EPSG:4326\n"))
    uuids = []
    for _ in range(3):
        uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
        for part in parts:  # one file per request, as PyODM sends them
            body, content_type = multipart([part])
            reply = httpx.post(
                f"{cluster.url}/task/new/upload/{uuid}", content=body, headers={"Content-Type": content_type}
            )
            assert reply.json() == {"success": True}
        commit = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
        assert commit == {"uuid": uuid}
        uuids.append(uuid)
        body, content_type = multipart(parts)
        single = httpx.post(f"{cluster.url}/task/new", content=body, headers={"Content-Type": content_type})
        uuids.append(single.json()["uuid"])
    for uuid in uuids:
        info = status_through(cluster, uuid, {30, 40})
        assert info["status"] == {"code": 40}, info
        assert (large.data_dir / "tasks" / uuid).is_dir()
    assert not (small.data_dir / "tasks").exists() or not any((small.data_dir / "tasks").iterdir())


def test_no_node_takes_that_many_files(stack: Stack, tmp_path: Path) -> None:
    """With only a node limited to 5, 5 images + `gcp_list.txt` (6 files as NodeODM counts them) are
    refused at commit with the reason, instead of becoming a task the node fails; 4 + 1 go through."""
    _, cluster = stack(node_flags=[("--max-images", "5")])
    images = make_images(tmp_path / "i", 5)
    gcp: tuple[str, str | None, bytes] = ("images", "gcp_list.txt", b"EPSG:4326\n")
    for count, expected in ((5, "refused"), (4, "accepted")):
        parts = [("images", Path(p).name, Path(p).read_bytes()) for p in images[:count]]
        body, content_type = multipart([*parts, gcp])
        uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
        upload = f"{cluster.url}/task/new/upload/{uuid}"
        reply = httpx.post(upload, content=body, headers={"Content-Type": content_type})
        assert reply.json() == {"success": True}
        commit = httpx.post(f"{cluster.url}/task/new/commit/{uuid}", timeout=30).json()
        if expected == "refused":
            assert commit == {
                "error": "No nodes available: this task has 6 files and a node counts every file against "
                "its image limit (GCP .txt and .zip files too), but the largest limit among the nodes is 5."
            }
        else:
            assert commit == {"uuid": uuid}
            assert status_through(cluster, uuid, {30, 40})["status"] == {"code": 40}
    wait_until(lambda: tmp_entries(cluster) == [], 10, "tmp empty")
