"""Replicas and the leader, with real clusterodm processes: two on one PostgreSQL database see
each other (`REPLICA LIST`, admin web, metrics) and exactly one leads; the leader alone polls the
nodes; killed with SIGKILL, another replica takes over within 10 s. On SQLite the process leads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypeVar

import httpx

from support.admin_env import Cli
from support.clusterodm import ClusterODM
from support.metrics import scrape, value
from support.postgres import PostgresServer
from support.simnode import SimNode
from support.waiting import wait_until

T = TypeVar("T")

TAKEOVER_LIMIT_S = 10.0
HEALTH_ROUND = "Health round:"
"""The debug line the health poller logs after each round of /info polls."""


def replicas(cluster: ClusterODM) -> list[dict[str, Any]]:
    """The admin web's replica table of `cluster`."""
    listed: list[dict[str, Any]] = httpx.get(f"{cluster.admin_url}/r/replica/list", timeout=5).json()
    return listed


def replica_list(cluster: ClusterODM) -> list[str]:
    """`REPLICA LIST` through the telnet admin CLI (the trailing empty line dropped)."""
    cli = Cli(cluster.host, cluster.admin_cli_port)
    try:
        cli.greeting()
        return [line for line in cli.command("REPLICA LIST") if line]
    finally:
        cli.close()


def health_rounds(cluster: ClusterODM) -> int:
    return cluster.log().count(HEALTH_ROUND)


def test_two_replicas_one_leader_and_a_takeover_when_it_is_killed(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    flags = ("--db", url, "--log-level", "debug")
    with (
        SimNode(tmp_path) as sim,
        ClusterODM(tmp_path, *flags, nodes=[sim], name="a", poll_interval=0.2).start(wait_nodes=1) as a,
        ClusterODM(tmp_path, *flags, name="b", poll_interval=0.2).start() as b,
    ):
        address = {a: f"http://127.0.0.1:{a.port}", b: f"http://127.0.0.1:{b.port}"}

        def both_listed(cluster: ClusterODM) -> list[dict[str, Any]]:
            listed = replicas(cluster)
            return listed if {r["address"] for r in listed} == set(address.values()) else []

        for cluster in (a, b):
            listed = wait_until(lambda c=cluster: both_listed(c), 10, "both replicas listed")
            assert [r["address"] for r in listed if r["this"]] == [address[cluster]]
            assert [r["address"] for r in listed if r["leader"]] == [address[a]]  # the first one started
            assert all(r["alive"] and r["heartbeatAgeMs"] < 10_000 for r in listed)
            lines = replica_list(cluster)
            assert len(lines) == 2 and lines[0].startswith("1) ") and lines[0].endswith("[this]")
            (leading,) = [line for line in lines if "[leader]" in line]
            assert address[a] in leading and "[alive] heartbeat " in leading
        assert value(scrape(f"{a.admin_url}/metrics"), "clusterodm_leader") == 1
        b_metrics = scrape(f"{b.admin_url}/metrics")
        assert value(b_metrics, "clusterodm_leader") == 0
        assert value(b_metrics, "clusterodm_replicas_alive") == 2

        # Only the leader polls: three more rounds on a, none at all on b, which runs meanwhile.
        start = health_rounds(a)
        wait_until(lambda: health_rounds(a) >= start + 3, 10, "three health rounds on the leader")
        assert health_rounds(b) == 0, "the replica that does not lead polled the nodes"

        assert a.proc is not None
        a.proc.kill()  # SIGKILL: no clean shutdown, its session ends with the process
        a.proc.wait(timeout=10)
        killed = time.monotonic()

        def b_leads() -> bool:
            listed = replicas(b)
            return [r["address"] for r in listed if r["leader"]] == [address[b]]

        wait_until(b_leads, TAKEOVER_LIMIT_S, "the other replica leads after the leader was killed")
        assert time.monotonic() - killed < TAKEOVER_LIMIT_S
        wait_until(lambda: health_rounds(b) > 0, 5, "the new leader polls the nodes")
        assert value(scrape(f"{b.admin_url}/metrics"), "clusterodm_leader") == 1
        assert "leads the cluster" in b.log()
        assert "no --replica-address is set" in b.log()  # derived addresses are pointed out


def test_a_cleanly_stopped_leader_hands_over_at_once_and_unregisters(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    flags = ("--db", url, "--replica-address")
    with (
        ClusterODM(tmp_path, *flags, "http://replica-a:3000", name="a").start() as a,
        ClusterODM(tmp_path, *flags, "http://replica-b:3000", name="b").start() as b,
    ):
        wait_until(lambda: len(replicas(b)) == 2 and any(r["leader"] for r in replicas(a)), 10, "a leads")
        a.stop()  # SIGTERM: releases the lock and removes its entry
        listed = wait_until(
            lambda: [r for r in replicas(b) if r["leader"]], 5, "b leads once a stopped cleanly"
        )
        assert listed[0]["this"] and listed[0]["address"] == "http://replica-b:3000"
        assert len(replicas(b)) == 1  # a unregistered itself instead of lingering as dead
        assert "no --replica-address is set" not in b.log()  # given: nothing to point out


def test_a_single_process_on_sqlite_leads(tmp_path: Path) -> None:
    with ClusterODM(tmp_path).start() as cluster:
        listed = wait_until(lambda: replicas(cluster), 10, "the process registered")
        assert [(r["this"], r["leader"], r["alive"]) for r in listed] == [(True, True, True)]
        assert listed[0]["address"] == f"http://127.0.0.1:{cluster.port}"  # from --bind and --port
        (line,) = replica_list(cluster)
        assert line.endswith("[leader] [this]")
        metrics = scrape(f"{cluster.admin_url}/metrics")
        assert value(metrics, "clusterodm_leader") == 1
        assert value(metrics, "clusterodm_replicas_alive") == 1
