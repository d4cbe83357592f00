"""Fixtures of the admin tests (helpers live in `support.admin_env`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.admin_env import LOCAL_TASK, PASSWORD, Cli, Env, start_env, wait_for_cli
from support.clusterodm import ClusterODM


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, clusterodm_backend: str) -> Iterator[Env]:
    """Three simulator nodes (a: 2 slots, running task; b: max 50 images; c: default), no password
    (on the module's backend: one cluster per backend)."""
    workdir = tmp_path_factory.mktemp("admin")
    cluster, sims, task_uuid = start_env(workdir)
    try:
        cluster.wait_online(3, 15)
        yield Env(cluster, sims, task_uuid, LOCAL_TASK)
    finally:
        cluster.stop()
        for sim in sims:
            sim.stop()


@pytest.fixture(scope="session")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterODM]:
    """A clusterodm without nodes, protected by --admin-pass."""
    with ClusterODM(tmp_path_factory.mktemp("guarded"), "--admin-pass", PASSWORD) as cluster:
        wait_for_cli(cluster)
        yield cluster


@pytest.fixture
def cli(env: Env) -> Iterator[Cli]:
    """A logged-in (no password) CLI connection, greeting already read."""
    client = Cli(env.cluster.host, env.cluster.admin_cli_port)
    client.greeting()
    try:
        yield client
    finally:
        client.close()
