"""The task table on PostgreSQL replicas: the final info of a task whose node is gone (kept by the
replica that removed the node) answers through every replica."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from pyodm import Node

from support.admin_env import Cli, wait_for_cli
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode


def test_a_gone_nodes_final_task_info_answers_through_every_replica(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    images = make_images(tmp_path / "images", 2)
    with (
        SimNode(tmp_path, "--processing-seconds", "0.3") as sim,
        ClusterODM(tmp_path, "--db", url, nodes=[sim], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[sim], name="b").start(wait_nodes=1) as b,
    ):
        task = Node(a.host, a.port).create_task(images, name="kept")
        task.wait_for_completion(interval=0.1)
        uuid = str(task.uuid)
        wait_for_cli(a)
        cli = Cli(a.host, a.admin_cli_port)
        cli.greeting()
        assert cli.command("NODE DEL 1") == ["OK"]  # A keeps the task's final state, then drops it
        deadline = time.monotonic() + 10
        while (info := httpx.get(f"{b.url}/task/{uuid}/info").json()).get("status") is None:
            assert time.monotonic() < deadline, info  # B hears the removal, then reads A's entry
            time.sleep(0.05)
        assert info["uuid"] == uuid and info["name"] == "kept" and info["status"]["code"] == 40
        assert info == httpx.get(f"{a.url}/task/{uuid}/info").json()
        output = httpx.get(f"{b.url}/task/{uuid}/output").json()
        assert isinstance(output, list) and output == httpx.get(f"{a.url}/task/{uuid}/output").json()
        assert output
