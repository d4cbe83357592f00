"""Two clusterodm replicas on one PostgreSQL database act as one cluster: a task created through
one is read, restarted, cancelled, removed and downloaded through the other; node changes on one
show on the other within a second with the same numbers; a removal on one is heard by the other
(its cached route is dropped); unknown uuids reach the database once per uuid and period; and a
start with a nodes.json on a database that already has nodes changes nothing."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from pyodm import Node

from clusterodm.cluster.routing import ABSENT_TTL_S
from support.admin_env import Cli, wait_for_cli
from support.clusterodm import ClusterODM
from support.images import make_images
from support.metrics import scrape, value
from support.postgres import PostgresServer
from support.simnode import SimNode
from support.waiting import within

PROPAGATION_S = 1.0
"""How fast a change on one replica must show on the other (the issue's bound)."""


def unknown_answer(cluster: ClusterODM, uuid: str) -> object:
    """What `cluster` answers for the info of a uuid it has no route for (a fresh uuid, renamed)."""
    fresh = str(uuidlib.uuid4())
    answer = httpx.get(f"{cluster.url}/task/{fresh}/info").json()
    return orjson.loads(orjson.dumps(answer).replace(fresh.encode(), uuid.encode()))


def route_reads(cluster: ClusterODM) -> float:
    return value(scrape(f"{cluster.admin_url}/metrics"), "clusterodm_store_route_reads_total")


def cli(cluster: ClusterODM) -> Cli:
    wait_for_cli(cluster)
    client = Cli(cluster.host, cluster.admin_cli_port)
    client.greeting()
    return client


def node_names(client: Cli) -> list[str]:
    """`NODE LIST` lines without the state that changes with polls: `1) host:port` (+ ` L` when locked)."""
    out = []
    for line in client.command("NODE LIST"):
        if line:
            number_name = " ".join(line.split()[:2])
            out.append(number_name + (" L" if line.endswith("[L]") else ""))
    return out


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimNode]:
    with SimNode(tmp_path, "--processing-seconds", "0.5") as node:
        yield node


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer, sim: SimNode) -> Iterator[tuple[ClusterODM, ClusterODM]]:
    """Replicas A and B on one fresh database; A's nodes.json seeds it, B's (the same) is ignored."""
    url = postgres.database()
    with ClusterODM(tmp_path, "--db", url, nodes=[sim], name="a").start(wait_nodes=1) as a:
        with ClusterODM(tmp_path, "--db", url, nodes=[sim], name="b").start(wait_nodes=1) as b:
            yield a, b


def db_url(cluster: ClusterODM) -> str:
    return cluster.flags[cluster.flags.index("--db") + 1]


def wait_routed(url: str, uuid: str) -> None:
    """Until the task is on its node (its route stored): before that it lives in A's upload pipeline,
    which other replicas do not share yet."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT count(*) FROM routes WHERE uuid = %s"
        within(10, lambda: conn.execute(query, (uuid,)).fetchone() == (1,), "task forwarded")


def test_a_task_created_through_one_replica_is_served_by_the_other(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    a, b = pair
    images = make_images(tmp_path / "images", 2)
    task = Node(a.host, a.port).create_task(images, {"dsm": True}, name="shared")
    uuid = str(task.uuid)
    wait_routed(db_url(a), uuid)
    through_b = Node(b.host, b.port).get_task(uuid)
    info = through_b.info()  # routed by B at once (heard from A, or read from the database)
    assert info.uuid == uuid and info.images_count == 2
    through_b.wait_for_completion(interval=0.1)
    assert through_b.info().status.name == "COMPLETED"
    assert httpx.get(f"{b.url}/task/{uuid}/output").json()  # the node's lines, through B
    download = httpx.get(f"{b.url}/task/{uuid}/download/all.zip")
    assert download.status_code == 200 and download.content.startswith(b"PK")

    assert httpx.post(f"{b.url}/task/restart", data={"uuid": uuid}).json() == {"success": True}
    assert httpx.post(f"{b.url}/task/cancel", data={"uuid": uuid}).json() == {"success": True}
    assert Node(a.host, a.port).get_task(uuid).info().status.name == "CANCELED"  # one task, seen by A

    reads = route_reads(a)
    assert httpx.post(f"{b.url}/task/remove", data={"uuid": uuid}).json() == {"success": True}
    # A created the route and still had it cached: B's removal reaches it by NOTIFY, so A answers
    # what it answers for any unknown uuid (not the node's own "not found", as a stale route would).
    expected = unknown_answer(a, uuid)
    assert expected != httpx.get(f"{sim.url}/task/{uuid}/info").json()
    within(PROPAGATION_S, lambda: httpx.get(f"{a.url}/task/{uuid}/info").json() == expected, "removal heard")
    assert route_reads(a) - reads <= 2  # the removal was heard, not read back per request


def test_node_changes_on_one_replica_show_on_the_other_within_a_second(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    a, b = pair
    with SimNode(tmp_path, name="second") as second, SimNode(tmp_path, name="third") as third:
        cli_a, cli_b = cli(a), cli(b)
        try:
            assert node_names(cli_a) == node_names(cli_b) == [f"1) {sim.host}:{sim.port}"]
            assert cli_a.command(f"NODE ADD {second.host} {second.port}") == ["OK"]
            want = [f"1) {sim.host}:{sim.port}", f"2) {second.host}:{second.port}"]
            within(PROPAGATION_S, lambda: node_names(cli_b) == want, "NODE ADD on A listed by B")

            assert cli_a.command("NODE LOCK 2") == ["OK"]
            want = [f"1) {sim.host}:{sim.port}", f"2) {second.host}:{second.port} L"]
            within(PROPAGATION_S, lambda: node_names(cli_b) == want, "NODE LOCK on A shown by B")

            assert cli_b.command(f"NODE ADD {third.host} {third.port}") == ["OK"]
            assert cli_b.command("NODE DEL 1") == ["OK"]
            want = [f"1) {second.host}:{second.port} L", f"2) {third.host}:{third.port}"]
            within(PROPAGATION_S, lambda: node_names(cli_a) == want, "NODE ADD and DEL on B shown by A")
            assert node_names(cli_b) == want

            assert cli_b.command("NODE UNLOCK 1") == ["OK"]
            want = [f"1) {second.host}:{second.port}", f"2) {third.host}:{third.port}"]
            within(PROPAGATION_S, lambda: node_names(cli_a) == want, "NODE UNLOCK on B shown by A")
            a.wait_online(2, 10)  # A polls the node B added
        finally:
            cli_a.close()
            cli_b.close()


async def _get_in_turn(host: str, port: int, paths: list[str]) -> list[object]:
    """GET `paths` one after the other over one keep-alive connection; the JSON answers. A client
    this thin leaves the pace to the server: httpx spends ~10 ms of CPU per request with hundreds
    queued for its pool, so on a loaded machine it, not clusterodm, took >10 s for 400 of them."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        answers = []
        for path in paths:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            assert head.startswith(b"HTTP/1.1 200 ") and length is not None, head
            answers.append(orjson.loads(await reader.readexactly(int(length[1]))))
        return answers
    finally:
        writer.close()


def test_unknown_uuids_reach_the_database_once_per_uuid_and_period(
    pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    _, b = pair
    unknown = [str(uuidlib.uuid4()) for _ in range(10)]
    before = scrape(f"{b.admin_url}/metrics")

    async def flood() -> list[object]:
        # 100 connections at once, 4 requests each: every uuid is asked by 10 of them together.
        asking = [
            _get_in_turn(b.host, b.port, [f"/task/{unknown[(c + k) % 10]}/info" for k in range(4)])
            for c in range(100)
        ]
        return [answer for answers in await asyncio.gather(*asking) for answer in answers]

    started = time.monotonic()
    answers = asyncio.run(asyncio.wait_for(flood(), 60))
    elapsed = time.monotonic() - started
    assert len(answers) == 400 and all("error" in answer for answer in answers)  # type: ignore[operator]
    after = scrape(f"{b.admin_url}/metrics")
    # Each uuid asked once per period: concurrent misses share one query, the answer is kept for
    # ABSENT_TTL_S (a flood slowed down by a loaded machine outlives it: once more per period).
    most = 10 * (1 + math.ceil(elapsed / ABSENT_TTL_S))
    for metric in ("clusterodm_store_route_reads_total", "clusterodm_store_upload_owner_reads_total"):
        reads = value(after, metric) - value(before, metric)
        assert 10 <= reads <= most, (metric, reads, elapsed)

    # A route the notices never told B of (written behind its back) is still found by a miss.
    url = db_url(b)
    with psycopg.connect(url, autocommit=True) as conn:
        node_id = conn.execute("SELECT id FROM nodes").fetchone()
        assert node_id is not None
        hidden = str(uuidlib.uuid4())
        conn.execute("INSERT INTO routes VALUES (%s, %s, 0, 0)", (hidden, node_id[0]))
    node_answer = httpx.get(f"{sim.url}/task/{hidden}/info").json()
    assert node_answer != unknown_answer(b, hidden)
    before = route_reads(b)
    assert httpx.get(f"{b.url}/task/{hidden}/info").json() == node_answer  # forwarded to the node
    assert httpx.get(f"{b.url}/task/{hidden}/info").json() == node_answer
    assert route_reads(b) - before == 1  # then cached


def test_a_start_with_nodes_json_on_a_database_with_nodes_changes_nothing(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    a, _ = pair
    url = db_url(a)
    images = make_images(tmp_path / "images", 2)
    uuid = str(Node(a.host, a.port).create_task(images, name="kept").uuid)
    wait_routed(url, uuid)
    with psycopg.connect(url) as conn:
        nodes_before = conn.execute("SELECT id, hostname, port, position FROM nodes ORDER BY id").fetchall()
    with SimNode(tmp_path, name="other") as other:
        c = ClusterODM(tmp_path, "--db", url, nodes=[other], name="c")
        written = (c.data_dir / "nodes.json").read_bytes()
        with c.start(wait_nodes=1):
            listed = httpx.get(f"{c.admin_url}/r/node/list").json()
            assert [n["name"] for n in listed] == [f"{sim.host}:{sim.port}"]
            assert Node(c.host, c.port).get_task(uuid).info().uuid == uuid
        assert (c.data_dir / "nodes.json").read_bytes() == written  # not rewritten with PostgreSQL
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id, hostname, port, position FROM nodes ORDER BY id").fetchall() == (
            nodes_before
        )
        assert conn.execute("SELECT uuid FROM routes").fetchall() == [(uuid,)]


def test_every_replica_hears_the_node_polls(pair: tuple[ClusterODM, ClusterODM]) -> None:
    """Only the leader polls the nodes; the others apply its published results (else their nodes
    would age out of the 1 s online window here, their only own poll being the one at start)."""

    def fresh_poll(cluster: ClusterODM) -> None:
        started = time.monotonic()

        def polled_since() -> bool:
            node = httpx.get(f"{cluster.admin_url}/r/node/list").json()[0]
            age_ms = node["lastPollAgeMs"]
            waited_ms = (time.monotonic() - started) * 1000
            return bool(node["isOnline"]) and age_ms is not None and age_ms < waited_ms - 50

        within(3 * PROPAGATION_S, polled_since, f"a fresh poll result on {cluster.url}")

    for _ in range(3):  # results keep coming, well past the online window
        for cluster in pair:
            fresh_poll(cluster)
