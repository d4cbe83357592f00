"""NodeODM's `zipurl` and its image limit (spec 9.2, 9.3), reproduced by the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.fileserver import FileServer
from support.images import make_images, zip_bytes
from support.multipart import multipart
from support.procs import free_port
from support.simnode import SimNode


def wait_status(sim: SimNode, uuid: str, codes: set[int], timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = httpx.get(f"{sim.url}/task/{uuid}/info").json()
        if info["status"]["code"] in codes:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.02)


def chunked(sim: SimNode, files: list[tuple[str, bytes]], **fields: str) -> str:
    """init (with `fields`), one upload per file, commit; the task's uuid."""
    uuid: str = httpx.post(
        f"{sim.url}/task/new/init", files={k: (None, v) for k, v in fields.items()}
    ).json()["uuid"]
    for name, data in files:
        body, content_type = multipart([("images", name, data)])
        reply = httpx.post(
            f"{sim.url}/task/new/upload/{uuid}", content=body, headers={"Content-Type": content_type}
        )
        assert reply.json() == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    return uuid


def test_zipurl_is_downloaded_and_unzipped(sim: SimNode, tmp_path: Path) -> None:
    """NodeODM downloads `zipurl` after answering, unzips it without folders, counts the images and
    moves `.txt` files to `gcp/`; uploaded files of a chunked task join the archive's."""
    images = [Path(p) for p in make_images(tmp_path / "z", 3)]
    archive = zip_bytes(
        {
            images[0].name: images[0].read_bytes(),
            images[1].name: images[1].read_bytes(),
            f"sub/{images[2].name}": images[2].read_bytes(),
            "gcp_list.txt": b"EPSG:4326\n",
        }
    )
    with FileServer({"/set.zip": archive}) as server:
        reply = httpx.post(f"{sim.url}/task/new", files={"zipurl": (None, server.url("/set.zip"))})
        uuid = reply.json()["uuid"]
        info = wait_status(sim, uuid, {40})
        assert info["imagesCount"] == 3
        task_dir = sim.data_dir / "tasks" / uuid
        assert sorted(p.name for p in (task_dir / "images").iterdir()) == sorted(p.name for p in images)
        assert (task_dir / "gcp" / "gcp_list.txt").read_bytes() == b"EPSG:4326\n"
        assert "GET /set.zip" in server.requests

        uuid = chunked(sim, [("extra.jpg", b"x" * 100)], zipurl=server.url("/set.zip"))
        assert wait_status(sim, uuid, {40})["imagesCount"] == 4


def test_unreachable_zipurl_fails_the_task_fast(sim: SimNode) -> None:
    """An unreachable `zipurl` is accepted (`{"uuid"}`), then fails the task (status 30) within a
    second with Node's socket error as errorMessage (`connect ECONNREFUSED 127.0.0.1:<port>`); a
    restart of it is accepted."""
    port = free_port()
    started = time.monotonic()
    reply = httpx.post(f"{sim.url}/task/new", files={"zipurl": (None, f"http://127.0.0.1:{port}/x.zip")})
    uuid = reply.json()["uuid"]
    info = wait_status(sim, uuid, {30, 40}, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert info["status"] == {"code": 30, "errorMessage": f"connect ECONNREFUSED 127.0.0.1:{port}"}
    assert httpx.post(f"{sim.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    wait_status(sim, uuid, {40})


def test_max_images_counts_every_uploaded_file(start_sim: Callable[..., SimNode], tmp_path: Path) -> None:
    """maxImages counts every uploaded file, `.txt` and `.zip` included, before they are moved away:
    5 images + `gcp_list.txt` on a node with maxImages 5 end FAILED with `6 images uploaded, but this
    node can only process up to 5.` and imagesCount 6; a restart answers success and runs it with 6
    (unchecked). 4 images + the GCP file pass, and count 4 once initialised."""
    sim = start_sim("--max-images", "5", "--processing-seconds", "0.1")
    images = [(Path(p).name, Path(p).read_bytes()) for p in make_images(tmp_path / "i", 5)]
    gcp = ("gcp_list.txt", b"EPSG:4326\n")
    uuid = chunked(sim, [*images, gcp])
    info = wait_status(sim, uuid, {30, 40})
    assert info["status"] == {
        "code": 30,
        "errorMessage": "6 images uploaded, but this node can only process up to 5.",
    }
    assert info["imagesCount"] == 6
    assert httpx.post(f"{sim.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    assert wait_status(sim, uuid, {30, 40})["status"] == {"code": 40}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 6

    body, content_type = multipart([("images", n, d) for n, d in [*images, gcp]])
    single = httpx.post(f"{sim.url}/task/new", content=body, headers={"Content-Type": content_type})
    assert single.json() == {"error": "6 images uploaded, but this node can only process up to 5."}

    uuid = chunked(sim, [*images[:4], gcp])
    assert wait_status(sim, uuid, {30, 40})["status"] == {"code": 40}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 4
