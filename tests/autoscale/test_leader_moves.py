"""Autoscaler leadership moving with the leader: three replicas on PostgreSQL with `--asr`, the
leader killed with SIGKILL, then a task no node has room for. The new leader alone creates its
machine, exactly one, and the task runs on it; the replica that received the task (not leading)
and the dead one create nothing. The fake docker-machine records which process called it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TypeVar

import httpx
from pyodm import Node

from autoscale.asrkit import FakeMachines, MotoS3, asr_config, write_asr
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode
from support.waiting import wait_until

T = TypeVar("T")

TAKEOVER_LIMIT_S = 10.0
COMPLETED = 40


def leader_address(cluster: ClusterODM) -> str | None:
    """The address of the live leader as `cluster` lists the replicas, if there is one."""
    listed = httpx.get(f"{cluster.admin_url}/r/replica/list", timeout=5).json()
    leaders = [r["address"] for r in listed if r["leader"] and r["alive"]]
    return leaders[0] if len(leaders) == 1 else None


def test_after_the_leader_is_killed_only_the_new_leader_creates_the_machine(
    tmp_path: Path, postgres: PostgresServer, fake_dm: FakeMachines, moto_s3: MotoS3
) -> None:
    bucket = moto_s3.create_bucket("odm-results")
    config = asr_config(s3={"endpoint": moto_s3.url, "bucket": bucket}, commitCleanupDelay=0.2)
    asr = write_asr(tmp_path / "asr.json", config)
    db = postgres.database()
    with SimNode(tmp_path) as static:

        def replica(name: str) -> ClusterODM:
            cluster = ClusterODM(tmp_path, "--db", db, name=name, poll_interval=0.2, env=fake_dm.env)
            cluster.flags += ["--asr", str(asr), "--public-address", cluster.url]
            return cluster

        a, b, c = replica("a"), replica("b"), replica("c")
        # One static node, locked: a task finds no room and needs a machine.
        nodes = [{"hostname": static.host, "port": static.port, "token": "", "locked": True}]
        a.data_dir.mkdir(parents=True)
        (a.data_dir / "nodes.json").write_text(json.dumps(nodes))
        with a.start(wait_nodes=1):
            wait_until(lambda: leader_address(a) == a.url, 10, "a leads")
            with b.start(), c.start():
                survivors = {b.url: b, c.url: c}
                wait_until(lambda: all(leader_address(r) == a.url for r in (b, c)), 10, "b and c see a lead")
                a.proc.kill()  # SIGKILL: its database session (and the leader lock) end with it
                killed = time.monotonic()

                def new_leader() -> str | None:
                    address = leader_address(b)
                    return address if address in survivors else None

                new = wait_until(new_leader, TAKEOVER_LIMIT_S, "a new leader after the kill")
                assert time.monotonic() - killed < TAKEOVER_LIMIT_S
                leader = survivors[new]
                (receiver,) = [r for url, r in survivors.items() if url != new]
                assert leader_address(receiver) == new
                assert fake_dm.commands("create") == []  # nothing needed a machine before the kill

                images = [str(tmp_path / n) for n in make_images(tmp_path, 3)]
                task = Node(receiver.host, receiver.port).create_task(images)
                wait_until(lambda: task.info().status.value == COMPLETED, 40, "the task completed")

                creates = [call for call in fake_dm.calls() if call["args"][:1] == ["create"]]
                assert len(creates) == 1, creates
                assert leader.proc is not None
                assert creates[0]["caller"] == leader.proc.pid, (creates[0], leader.proc.pid)
                assert static.log().count("/task/new") == 0  # the locked node got nothing
