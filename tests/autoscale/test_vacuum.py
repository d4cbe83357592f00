"""Vacuum: maxRuntime, idle maxUploadTime, real offline time; cancel destroys the task's machine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from autoscale.asrkit import FakeMachines
from autoscale.scene import scaled_cluster
from clusterodm.autoscale import Autoscaler
from clusterodm.autoscale.vacuum import vacuum_reason
from clusterodm.cluster.node import DockerMachine, Node
from clusterodm.nodeodm.status import TaskStatus
from support.images import make_images

MIN = 60_000


def machine_node(created_ms: int, max_runtime_s: int = -1, max_upload_s: int = -1) -> Node:
    node = Node(
        1, "10.0.0.9", 3000, docker_machine=DockerMachine("m", created_ms, max_runtime_s, max_upload_s)
    )
    node.online_window_ms = 2 * MIN
    return node


def test_vacuum_rules() -> None:
    now = 100 * MIN
    static = Node(2, "10.0.0.1", 3000)
    static.last_refreshed_ms = 1
    assert vacuum_reason(static, now) is None

    old = machine_node(now - 11 * MIN, max_runtime_s=600)
    old.last_refreshed_ms, old.info = now - 1000, {"taskQueueCount": 1}
    assert "maxRuntime" in (vacuum_reason(old, now) or "")

    idle = machine_node(now - 6 * MIN, max_upload_s=300)
    idle.last_refreshed_ms, idle.info = now - 1000, {"taskQueueCount": 0}
    assert "maxUploadTime" in (vacuum_reason(idle, now) or "")
    idle.info = {"taskQueueCount": 1}
    assert vacuum_reason(idle, now) is None  # busy: only maxRuntime can stop it

    # One failed poll does not count as "offline since 1970" (spec 8.17).
    blip = machine_node(now - 60 * MIN, max_upload_s=300)
    blip.last_refreshed_ms, blip.info, blip.last_error = now - 61_000, {"taskQueueCount": 1}, "timeout"
    assert vacuum_reason(blip, now) is None
    gone = machine_node(now - 60 * MIN, max_upload_s=300)
    gone.last_refreshed_ms = now - 8 * MIN  # offline since 6 minutes (window of 2)
    assert "offline for 360 s" in (vacuum_reason(gone, now) or "")
    gone.last_refreshed_ms = now - 6 * MIN  # offline since 4 minutes only
    assert vacuum_reason(gone, now) is None


def test_vacuum_destroys_machines_past_max_runtime(tmp_path: Path, fake_dm: FakeMachines) -> None:
    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, maxRuntime=1) as cluster:
            scaler = cluster.autoscaler
            assert isinstance(scaler, Autoscaler)
            young = await scaler.create_node(5, lambda _: None, asyncio.Event())
            await scaler.vacuum()
            assert cluster.registry.get(young.id) is young
            assert young.docker_machine is not None
            young.docker_machine.created_ms -= 2000  # now older than maxRuntime
            await scaler.vacuum()
            assert cluster.registry.get(young.id) is None and fake_dm.machines() == {}

    asyncio.run(scenario())


def test_cancel_destroys_the_machine_and_keeps_the_info(tmp_path: Path, fake_dm: FakeMachines) -> None:
    fake_dm.env["FAKE_DM_PROCESSING"] = "30"

    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm) as cluster:
            scaler = cluster.autoscaler
            assert isinstance(scaler, Autoscaler)
            node = await scaler.create_node(1, lambda _: None, asyncio.Event())
            files = [("images", (n, (tmp_path / n).read_bytes())) for n in make_images(tmp_path, 1)]
            r = await cluster.http.post(
                f"{node.base_url}/task/new", params={"token": node.token}, files=files
            )
            uuid = r.json()["uuid"]
            await cluster.routes.add(uuid, node, "")
            cancel = f"{node.base_url}/task/cancel"
            await cluster.http.post(cancel, params={"token": node.token}, data={"uuid": uuid})
            await scaler.on_task_cancelled(uuid)
            assert cluster.registry.get(node.id) is None and fake_dm.machines() == {}
            info = cluster.tasks.info_view(uuid)
            assert info is not None and info["status"]["code"] == TaskStatus.CANCELED

    asyncio.run(scenario())
