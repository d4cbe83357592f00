"""An in-process cluster with an autoscaler driving the fake docker-machine (real subprocesses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from autoscale.asrkit import FakeMachines, asr_config
from clusterodm.autoscale import Autoscaler
from clusterodm.autoscale.config import parse_settings
from clusterodm.autoscale.machine import DockerMachine
from clusterodm.config import Config
from clusterodm.services import Cluster


@asynccontextmanager
async def scaled_cluster(
    tmp_path: Path, fake: FakeMachines, public_address: str = "http://127.0.0.1:9", **asr: Any
) -> AsyncIterator[Cluster]:
    """`Cluster.open` without `--asr`, then an Autoscaler over the fake docker-machine attached to it."""
    config = Config(data_dir=tmp_path / "data", public_address=public_address, poll_interval=0.5)
    cluster = await Cluster.open(config)
    settings = parse_settings(asr_config(**asr))
    machine = DockerMachine(fake.executable, env=fake.env)
    cluster.autoscaler = Autoscaler(
        settings,
        machine,
        registry=cluster.registry,
        routes=cluster.routes,
        tasks=cluster.tasks,
        node_client=cluster.node_client,
        poller=cluster.poller,
        http=cluster.http,
        metrics=cluster.metrics,
        public_address=public_address,
        backoff_unit_s=0.05,
    )
    try:
        yield cluster
    finally:
        await cluster.autoscaler.close()
        await cluster.close()


async def wait_for(predicate: Any, limit_s: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {limit_s} s")
        await asyncio.sleep(0.05)
