"""The simulator's task queue, clock, webhook body and all.zip as NodeODM 2.2.4 has them (spec 9.9-9.10)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clusterodm.sim.task import sim_seconds
from support.paths import TEST_DATA
from support.simnode import SimNode

from .conftest import WebhookReceiver

LISTING: list[str] = json.loads((TEST_DATA / "nodeodm-allzip-listing.json").read_text())


def info(sim: SimNode, uuid: str) -> dict[str, Any]:
    return httpx.get(f"{sim.url}/task/{uuid}/info", timeout=5).json()


def wait_code(sim: SimNode, uuid: str, code: int, timeout: float = 15.0) -> dict[str, Any]:
    """Poll the task's info until its status code is `code`."""
    deadline = time.monotonic() + timeout
    while True:
        current = info(sim, uuid)
        if current["status"]["code"] == code:
            return current
        assert time.monotonic() < deadline, f"task {uuid} never reached {code}: {current}"
        time.sleep(0.02)


def new_task(sim: SimNode, names: list[str], **fields: str) -> str:
    files: list[tuple[str, tuple[str | None, bytes | str]]] = [
        ("images", (name, b"\xff\xd8" + name.encode())) for name in names
    ]
    files += [(key, (None, value)) for key, value in fields.items()]
    reply = httpx.post(f"{sim.url}/task/new", files=files).json()
    return str(reply["uuid"])


def download(sim: SimNode, uuid: str) -> bytes:
    reply = httpx.get(f"{sim.url}/task/{uuid}/download/all.zip", timeout=10)
    assert reply.headers["content-type"] == "application/zip", reply.text
    return reply.content


def members(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return opened.namelist()


def test_queued_tasks_run_in_the_order_first_added(start_sim: Callable[..., SimNode]) -> None:
    """NodeODM: the next task to run is the first QUEUED one in its task table, which keeps the order
    tasks were first added, so a restarted older task runs before a newer task that has been waiting
    longer in the queue."""
    sim = start_sim("-q", "1", "--processing-seconds", "1.5")
    older, middle, newer = (new_task(sim, [f"{n}.jpg"]) for n in ("a", "b", "c"))
    wait_code(sim, older, 20)
    wait_code(sim, newer, 10)
    assert httpx.post(f"{sim.url}/task/cancel", data={"uuid": older}).json() == {"success": True}
    wait_code(sim, middle, 20)  # the freed slot goes to the next task in table order
    assert httpx.post(f"{sim.url}/task/restart", data={"uuid": older}).json() == {"success": True}
    assert info(sim, older)["status"]["code"] == 10  # queued after `newer`...
    wait_code(sim, older, 20)  # ...but runs first once `middle` is done
    assert info(sim, middle)["status"]["code"] == 40
    assert info(sim, newer)["status"]["code"] == 10


def test_processing_time_is_minus_one_until_the_first_tick(start_sim: Callable[..., SimNode]) -> None:
    """NodeODM refreshes processingTime with a 1 s timer: a task that has just started running still
    says -1, then the value steps once per tick; once finished it is exact, and a restart resets it
    to -1. (The tick is a simulator setting, short here.)"""
    sim = start_sim("--processing-seconds", "1.2", "--processing-time-tick", "0.4")
    uuid = new_task(sim, ["a.jpg"])
    running = wait_code(sim, uuid, 20)
    assert running["processingTime"] == -1
    seen = {running["processingTime"]}
    while (current := info(sim, uuid))["status"]["code"] == 20:
        seen.add(current["processingTime"])
        time.sleep(0.02)
    assert 400 in seen and all(t == -1 or t % 400 == 0 for t in seen), seen  # whole ticks only
    final = current["processingTime"]
    assert current["status"]["code"] == 40 and 1200 <= final < 5000
    assert httpx.post(f"{sim.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    assert info(sim, uuid)["processingTime"] == -1


def test_webhook_body_lists_image_metadata(
    start_sim: Callable[..., SimNode], webhook_receiver: Callable[..., WebhookReceiver]
) -> None:
    """NodeODM posts the task info plus `images`: the task's images.json (ODM's list of one object
    per image, `filename` first among camera and geo fields; GCP files are not images), or [] when
    there is none. The same images.json is in all.zip."""
    receiver = webhook_receiver()
    sim = start_sim("--processing-seconds", "0.2", "--processing-time-tick", "0")
    uuid = new_task(sim, ["b.JPG", "a.jpg", "gcp_list.txt"], webhook=f"{receiver.url}/hook")
    [payload] = receiver.wait_for(1)
    assert payload["uuid"] == uuid and payload["status"] == {"code": 40} and payload["imagesCount"] == 2
    images = payload.pop("images")
    assert [image["filename"] for image in images] == ["a.jpg", "b.JPG"]
    fields = {"width", "height", "camera_make", "camera_model", "latitude"}
    assert all(fields <= image.keys() for image in images)
    assert payload == info(sim, uuid)
    with zipfile.ZipFile(io.BytesIO(download(sim, uuid))) as archive:
        assert json.loads(archive.read("images.json")) == images


def test_downloads_after_cancel_and_during_restart_serve_the_existing_zip(
    start_sim: Callable[..., SimNode],
) -> None:
    """NodeODM's download route only checks that all.zip exists: after a completed task is
    cancelled, and while a restarted task runs again, the previous archive is served (restart
    does not delete it); the new run writes it again when it completes."""
    sim = start_sim("--processing-seconds", "0.8", "--asset-size", "20000")
    uuid = new_task(sim, ["a.jpg"])
    wait_code(sim, uuid, 40)
    before = download(sim, uuid)
    assert httpx.post(f"{sim.url}/task/cancel", data={"uuid": uuid}).json() == {"success": True}
    assert info(sim, uuid)["status"]["code"] == 50
    assert download(sim, uuid) == before
    assert httpx.post(f"{sim.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    wait_code(sim, uuid, 20)
    assert download(sim, uuid) == before
    wait_code(sim, uuid, 40)
    assert members(download(sim, uuid)) == members(before)


def test_outputs_that_do_not_exist_are_left_out_of_the_zip(sim: SimNode) -> None:
    """NodeODM gives 7z only the `outputs` that exist in the project folder (a folder brings
    everything under it) and leaves the others out without an error; when none exists, 7z gets no
    path and archives the whole folder."""
    outputs = ["odm_orthophoto/odm_orthophoto.tif", "no/such.tif", "odm_dem", "../images.json"]
    chosen = new_task(sim, ["a.jpg"], outputs=json.dumps(outputs))
    missing = new_task(sim, ["a.jpg"], outputs=json.dumps(["nothing.tif", "odm_nothing"]))
    for uuid in (chosen, missing):
        wait_code(sim, uuid, 40)
    assert sorted(members(download(sim, chosen))) == [
        "images.json",
        "odm_dem/dsm.tif",
        "odm_dem/dtm.tif",
        "odm_orthophoto/odm_orthophoto.tif",
    ]
    assert sorted(members(download(sim, missing))) == sorted(LISTING)


def test_a_one_slot_node_queues_further_tasks_each_with_its_own_length(
    start_sim: Callable[..., SimNode],
) -> None:
    """NodeODM with maxParallelTasks 1 runs one task and keeps the others QUEUED (10), all counted
    in /info's taskQueueCount, and starts the next as soon as the slot frees. Simulator only: a
    task named with `sim-seconds=N` runs N seconds instead of --processing-seconds, so workloads
    can mix lengths."""
    sim = start_sim("-q", "1", "--processing-seconds", "0.3", "--processing-time-tick", "0")
    long = new_task(sim, ["a.jpg"], name="long sim-seconds=1.2")
    wait_code(sim, long, 20)
    short = new_task(sim, ["b.jpg"], name="sim-seconds=0.1 short")
    default = new_task(sim, ["c.jpg"], name="default xsim-seconds=5")
    wait_code(sim, default, 10)
    node = httpx.get(f"{sim.url}/info").json()
    assert node["maxParallelTasks"] == 1 and node["taskQueueCount"] == 3
    assert info(sim, long)["status"]["code"] == 20 and info(sim, short)["status"]["code"] == 10
    done_long = wait_code(sim, long, 40)
    done_short = wait_code(sim, short, 40)
    assert info(sim, default)["status"]["code"] in (10, 20)  # one slot: never two running
    done_default = wait_code(sim, default, 40)
    assert 1200 <= done_long["processingTime"] < 2500
    assert 100 <= done_short["processingTime"] < 1000
    assert 300 <= done_default["processingTime"] < 1200  # a malformed marker means the node's default
    assert done_short["name"] == "sim-seconds=0.1 short"  # the name itself is left as it is


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("sim-seconds=30", 30.0),
        ("survey 7 sim-seconds=2.5", 2.5),
        ("sim-seconds=.5 tail", 0.5),
        ("sim-seconds=0", 0.0),
        ("xsim-seconds=3", None),
        ("sim-seconds=-1", None),
        ("sim-seconds=3s", None),
        ("sim-seconds=", None),
        (None, None),
    ],
)
def test_sim_seconds_reads_only_a_whole_marker(name: str | None, seconds: float | None) -> None:
    assert sim_seconds(name) == seconds


def test_the_load_route_reports_the_most_tasks_held_and_run(start_sim: Callable[..., SimNode]) -> None:
    """Simulator only (`/_sim/load`): what slot tests check a proxy against. A one-slot node given
    three tasks holds three (one running, two queued) and runs one; the maxima stay when they end."""
    sim = start_sim("-q", "1", "--processing-seconds", "30")
    assert sim.load() == {"queueCount": 0, "maxQueueCount": 0, "maxRunning": 0, "parallelTasks": 1}
    first, *others = (new_task(sim, [f"{n}.jpg"]) for n in ("a", "b", "c"))
    wait_code(sim, first, 20)
    for uuid in others:
        wait_code(sim, uuid, 10)
    assert sim.load() == {"queueCount": 3, "maxQueueCount": 3, "maxRunning": 1, "parallelTasks": 1}
    for uuid in (first, *others):
        assert httpx.post(f"{sim.url}/task/cancel", data={"uuid": uuid}).json() == {"success": True}
    assert sim.load() == {"queueCount": 0, "maxQueueCount": 3, "maxRunning": 1, "parallelTasks": 1}
