"""create_node against the fake docker-machine: real simulator processes on loopback addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from autoscale.asrkit import FakeMachines
from autoscale.scene import scaled_cluster, wait_for
from clusterodm.autoscale import AutoscaleError, Autoscaler
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeError
from clusterodm.services import Cluster


def scaler_of(cluster: object) -> Autoscaler:
    autoscaler = getattr(cluster, "autoscaler", None)
    assert isinstance(autoscaler, Autoscaler)
    return autoscaler


def machine_counts(cluster: Cluster) -> dict[str, float | None]:
    """The autoscaler's machine counters as /metrics shows them."""
    registry = cluster.metrics.registry
    return {
        event: registry.get_sample_value(f"clusterodm_autoscaler_machines_{event}_total")
        for event in ("created", "destroyed", "failed")
    }


def test_create_node_sets_up_and_registers_a_machine(tmp_path: Path, fake_dm: FakeMachines) -> None:
    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, region=["ams3"]) as cluster:
            scaler = scaler_of(cluster)
            said: list[str] = []
            node = await scaler.create_node(30, said.append, asyncio.Event())
            assert node.auto_spawned and node.online(cluster.registry.now())
            assert node.hostname.startswith(fake_dm.net) and node.port == 3000
            assert cluster.registry.get(node.id) is node and scaler.pending == 0
            dm = node.docker_machine
            assert dm is not None and dm.name.startswith("clusterodm-30-") and len(dm.secret) >= 24
            # The node answers with its fresh token only.
            assert (await cluster.node_client.info(node))["maxParallelTasks"] == 1
            with pytest.raises(NodeError):
                await cluster.node_client.info(Node(0, node.hostname, node.port, token="wrong"))

            create = fake_dm.commands("create")
            assert create == [
                ["create", "--driver", "digitalocean", "--digitalocean-access-token", "do-secret-token"]
                + ["--digitalocean-region", "ams3", "--digitalocean-image", "ubuntu-16-04-x64"]
                + ["--digitalocean-size", "small", "--digitalocean-monitoring=true"]
                + ["--digitalocean-tags", "clusterodm", dm.name]
            ]
            remote = [c[2:] for c in fake_dm.commands("ssh-parsed")]
            assert remote[0] == ["cat", "/proc/meminfo"]
            assert remote[1] == ["fallocate", "-l", "1015000K", "/swapfile"]
            run = remote[-1]
            assert run[:2] == ["docker", "run"] and run[-2:] == ["--token", node.token]
            assert run[run.index("--webhook") + 1] == f"http://127.0.0.1:9/commit?secret={dm.secret}"
            assert "Creating machine" in said[0] and said[-1] == f"Machine {dm.name} is ready"
            assert not any(dm.secret in line or "do-secret-token" in line for line in said)

            view = scaler.view_command(30)
            assert view.startswith(
                "docker-machine create --driver digitalocean --digitalocean-access-token ****"
            )
            assert "--digitalocean-size small" in view and "do-secret-token" not in view

            assert await scaler.retire(node, "test over")
            assert cluster.registry.get(node.id) is None and fake_dm.machines() == {}
            assert machine_counts(cluster) == {"created": 1, "destroyed": 1, "failed": 0}
            assert fake_dm.commands("rm")[-1] == ["rm", "-y", "-f", dm.name]
            with pytest.raises(httpx.HTTPError):
                await cluster.http.get(f"{node.base_url}/info", timeout=0.5)

    asyncio.run(scenario())


def test_create_failure_removes_the_machine(tmp_path: Path, fake_dm: FakeMachines) -> None:
    fake_dm.env["FAKE_DM_FAIL_CREATES"] = "9"

    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, createRetries=2) as cluster:
            said: list[str] = []
            with pytest.raises(AutoscaleError, match="after 2 attempt.*region is full"):
                await scaler_of(cluster).create_node(5, said.append, asyncio.Event())
            assert len(fake_dm.commands("create")) == 2
            names = {c[-1] for c in fake_dm.commands("create")}
            assert {c[-1] for c in fake_dm.commands("rm")} == names
            assert len(cluster.registry) == 0 and scaler_of(cluster).pending == 0
            assert any("region is full" in line for line in said)
            assert machine_counts(cluster) == {"created": 0, "destroyed": 0, "failed": 1}

    asyncio.run(scenario())


def test_retries_rotate_regions(tmp_path: Path, fake_dm: FakeMachines) -> None:
    fake_dm.env["FAKE_DM_FAIL_CREATES"] = "2"

    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, createRetries=3, region=["nyc1", "sfo2"]) as cluster:
            node = await scaler_of(cluster).create_node(5, lambda _: None, asyncio.Event())
            regions = [c[c.index("--digitalocean-region") + 1] for c in fake_dm.commands("create")]
            assert regions == ["nyc1", "sfo2", "nyc1"]
            assert node.online(cluster.registry.now())

    asyncio.run(scenario())


def test_setup_failure_fails_with_the_reason(tmp_path: Path, fake_dm: FakeMachines) -> None:
    """The machine reports no memory size: setup stops, the machine is removed."""

    async def scenario() -> None:
        async with scaled_cluster(
            tmp_path, fake_dm, imageSizeMapping=[{"maxImages": 9, "slug": "s"}]
        ) as cluster:
            scaler = scaler_of(cluster)
            fake_dm.env["FAKE_DM_NET"] = "not-an-address."  # the node can never come online
            scaler.machine = type(scaler.machine)(fake_dm.executable, env=fake_dm.env)
            with pytest.raises(AutoscaleError, match="did not come online"):
                await scaler.create_node(9, lambda _: None, asyncio.Event())
            assert fake_dm.machines() == {} and len(cluster.registry) == 0

    asyncio.run(scenario())


def test_machines_limit_counts_pending_creations(tmp_path: Path, fake_dm: FakeMachines) -> None:
    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, dropletsLimit=1, minImages=3) as cluster:
            scaler = scaler_of(cluster)
            assert not scaler.can_create(2)  # below minImages
            assert not scaler.can_create(501)  # no imageSizeMapping entry
            assert scaler.can_create(3)
            first = asyncio.create_task(scaler.create_node(5, lambda _: None, asyncio.Event()))
            await wait_for(lambda: scaler.pending == 1, what="creation started")
            assert not scaler.can_create(5)
            with pytest.raises(AutoscaleError):
                await scaler.create_node(5, lambda _: None, asyncio.Event())
            await first
            assert not scaler.can_create(5)
            assert len(fake_dm.commands("create")) == 1

    asyncio.run(scenario())


def test_abort_during_creation_destroys_the_machine(tmp_path: Path, fake_dm: FakeMachines) -> None:
    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm) as cluster:
            abort = asyncio.Event()

            def say(line: str) -> None:
                if line.startswith("Starting"):
                    abort.set()  # the user cancels while NodeODM is being started

            with pytest.raises(AutoscaleError, match="cancelled"):
                await scaler_of(cluster).create_node(5, say, abort)
            await wait_for(lambda: not fake_dm.machines(), what="machine removed")
            assert len(cluster.registry) == 0
            assert fake_dm.commands("rm")

    asyncio.run(scenario())
