"""PyODM drives the simulator end to end: create, wait, download, list, cancel, restart, remove."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import TaskFailedError
from pyodm.types import TaskStatus

from support.images import make_images
from support.paths import TEST_DATA
from support.simnode import SimNode

EXPECTED_MEMBERS = set(json.loads((TEST_DATA / "nodeodm-allzip-listing.json").read_text()))


def pyodm_node(sim: SimNode, token: str = "") -> Node:
    return Node(sim.host, sim.port, token=token, timeout=10)


def wait_status(sim: SimNode, uuid: str, codes: set[int], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = httpx.get(f"{sim.url}/task/{uuid}/info").json()
        if info.get("status", {}).get("code") in codes:
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {uuid} stuck in {info}")
        time.sleep(0.05)


@pytest.mark.parametrize("parallel_uploads", [10, 1])
def test_chunked_create_wait_download(
    sim: SimNode, images: list[str], tmp_path: Path, parallel_uploads: int
) -> None:
    node = pyodm_node(sim)
    task = node.create_task(
        images, {"dsm": True, "mesh-octree-depth": 12}, name="field-3", parallel_uploads=parallel_uploads
    )
    task.wait_for_completion(interval=0.1)
    info = task.info(with_output=0)
    assert info.status == TaskStatus.COMPLETED
    assert info.name == "field-3"
    assert info.images_count == 30
    assert info.progress == 100
    assert info.processing_time >= 250
    assert [o["name"] for o in info.options] == ["mesh-octree-depth", "dsm", "pc-ept", "cog", "gltf"]
    assert info.output[-1] == "Compressing all.zip\n"
    assert {"uuid": task.uuid} in httpx.get(f"{sim.url}/task/list").json()
    dest = tmp_path / "assets"
    zip_path = Path(task.download_zip(str(dest)))
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.testzip() is None
        assert set(archive.namelist()) == EXPECTED_MEMBERS
    assert abs(zip_path.stat().st_size - 300000) < 3000
    task.download_assets(str(tmp_path / "extracted"))
    assert (tmp_path / "extracted" / "odm_orthophoto" / "odm_orthophoto.tif").is_file()


def test_single_shot_and_zipurl_only(sim: SimNode, images: list[str]) -> None:
    node = pyodm_node(sim)
    task = node.create_task_fallback(images[:3], {"dsm": True})
    task.wait_for_completion(interval=0.1)
    assert task.info().images_count == 3
    reply = httpx.post(f"{sim.url}/task/new", files={"zipurl": (None, "http://example.invalid/x.zip")}).json()
    info = wait_status(sim, reply["uuid"], {30, 40})  # NodeODM fails the task on the download
    assert info["status"]["code"] == 30 and info["status"]["errorMessage"].startswith("getaddrinfo E")
    assert info["imagesCount"] == 0
    assert "name" not in info


def test_name_omitted_or_defaulted_and_date_created(sim: SimNode, images: list[str]) -> None:
    files = [("images", ("a.jpg", b"\xff\xd8x"))]
    no_name = httpx.post(f"{sim.url}/task/new", files=files).json()["uuid"]
    empty = httpx.post(
        f"{sim.url}/task/new", files=[*files, ("name", (None, "")), ("dateCreated", (None, "1700000000123"))]
    ).json()["uuid"]
    assert "name" not in httpx.get(f"{sim.url}/task/{no_name}/info").json()
    info = httpx.get(f"{sim.url}/task/{empty}/info").json()
    assert info["name"] == "Task of 2023-11-14T22:13:20.123Z"
    assert info["dateCreated"] == 1700000000123


def test_upload_renaming(sim: SimNode) -> None:
    uuid = httpx.post(f"{sim.url}/task/new/init", files={"name": (None, "x")}).json()["uuid"]
    for name in ["a.jpg", "a.jpg", "dir/a.jpg", "body.json"]:
        reply = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"images": (name, b"data")})
        assert reply.json() == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    stored = sorted(p.name for p in (sim.data_dir / "tasks" / uuid / "images").iterdir())
    assert stored == ["_body.json", "a.jpg", "a_.jpg", "a__.jpg"]
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 4


def test_output_with_negative_and_garbage_lines(sim: SimNode, images: list[str]) -> None:
    task = pyodm_node(sim).create_task(images[:2])
    task.wait_for_completion(interval=0.1)
    full = task.output()
    assert len(full) > 100
    assert task.output(-3) == full[-3:]
    assert httpx.get(f"{sim.url}/task/{task.uuid}/output", params={"line": "5abc"}).json() == full[5:]
    assert httpx.get(f"{sim.url}/task/{task.uuid}/output", params={"line": "zz"}).json() == full
    info = httpx.get(f"{sim.url}/task/{task.uuid}/info", params={"with_output": "-2"}).json()
    assert info["output"] == full[-2:]
    assert "output" not in httpx.get(f"{sim.url}/task/{task.uuid}/info").json()


def test_cancel_restart_remove(start_sim: Callable[..., SimNode], images: list[str]) -> None:
    sim = start_sim("--processing-seconds", "3", "-q", "1", "--processing-time-tick", "0")
    node = pyodm_node(sim)
    first = node.create_task(images[:2], {"dsm": True})
    second = node.create_task(images[:2])
    wait_status(sim, first.uuid, {20})
    assert wait_status(sim, second.uuid, {10})["status"]["code"] == 10
    assert node.info().task_queue_count == 2
    not_ready = httpx.get(f"{sim.url}/task/{second.uuid}/download/all.zip").json()
    assert not_ready == {"error": "Asset not ready"}
    running = httpx.get(f"{sim.url}/task/{first.uuid}/info").json()
    assert running["processingTime"] >= 0
    assert first.cancel() is True
    assert first.cancel() is True  # cancelling twice succeeds
    info = first.info()
    assert info.status == TaskStatus.CANCELED and info.processing_time == -1
    wait_status(sim, second.uuid, {20})  # the freed slot goes to the queued task
    with pytest.raises(TaskFailedError):
        first.wait_for_completion(interval=0.1)
    assert first.restart({"orthophoto-resolution": 3, "dsm": False}) is True
    restarted = first.info()
    assert [o["name"] for o in restarted.options] == ["dsm", "orthophoto-resolution", "pc-ept", "cog", "gltf"]
    assert restarted.status == TaskStatus.QUEUED  # the only slot is busy with the second task
    assert first.output() == []
    reply = httpx.post(f"{sim.url}/task/restart", data={"uuid": second.uuid}).json()
    assert reply == {"success": False, "error": "Task cannot be restarted"}
    assert second.remove() is True
    assert {"uuid": second.uuid} not in httpx.get(f"{sim.url}/task/list").json()
    assert httpx.post(f"{sim.url}/task/remove", json={"uuid": second.uuid}).json() == {
        "success": False,
        "error": f"{second.uuid} not found",
    }


def test_restart_clears_output_and_resets_date(sim: SimNode, images: list[str]) -> None:
    node = pyodm_node(sim)
    task = node.create_task(images[:2], {"dsm": True})
    task.wait_for_completion(interval=0.1)
    before = task.info(with_output=0)
    before_ms = httpx.get(f"{sim.url}/task/{task.uuid}/info").json()["dateCreated"]
    assert before.output
    time.sleep(0.01)  # dateCreated has ms resolution; make "later" observable
    assert task.restart() is True
    after = task.info(with_output=0)
    assert httpx.get(f"{sim.url}/task/{task.uuid}/info").json()["dateCreated"] > before_ms
    assert after.output == [] and after.progress == 0
    assert after.options == before.options  # no options field: previous options kept
    task.wait_for_completion(interval=0.1)


def test_fail_tasks_and_parallel_info(start_sim: Callable[..., SimNode], images: list[str]) -> None:
    sim = start_sim("--processing-seconds", "0.2", "--fail-tasks", "-q", "3", "--engine-version", "9.9.9")
    node = pyodm_node(sim)
    assert node.info().max_parallel_tasks == 3
    assert node.info().engine_version == "9.9.9"
    task = node.create_task(images[:2])
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.1)
    info = httpx.get(f"{sim.url}/task/{task.uuid}/info").json()
    assert info["status"] == {"code": 30, "errorMessage": "Cannot process dataset"}
    assert httpx.get(f"{sim.url}/task/{task.uuid}/download/all.zip").json() == {"error": "Asset not ready"}


def test_asset_size_and_no_range(start_sim: Callable[..., SimNode], images: list[str]) -> None:
    sim = start_sim("--processing-seconds", "0.1", "--asset-size", "2500000")
    task = pyodm_node(sim).create_task(images[:2])
    task.wait_for_completion(interval=0.1)
    reply = httpx.get(f"{sim.url}/task/{task.uuid}/download/all.zip", headers={"Range": "bytes=0-99"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/zip"
    assert reply.headers["content-disposition"] == "attachment; filename=all.zip"
    assert "accept-ranges" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.content)
    assert abs(len(reply.content) - 2500000) < 25000
    assert sim.stop() == 0  # SIGTERM stops the node cleanly
    assert "simulated NodeODM stopped" in sim.log()


def test_many_images_written_to_disk(sim: SimNode, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "big", 3, size=3 * 1024 * 1024)
    task = pyodm_node(sim).create_task(paths)
    stored = sim.data_dir / "tasks" / task.uuid / "images"
    assert sorted(p.stat().st_size for p in stored.iterdir()) == [3 * 1024 * 1024 + 6] * 3
    task.wait_for_completion(interval=0.1)
