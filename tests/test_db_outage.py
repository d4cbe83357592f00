"""PostgreSQL stopped for 5 s under two replicas, then started again, with no restart of either.

Throughout, routes the replicas have cached answer (info, output, download, cancel); whatever
must write (init, commit, task removal, NODE ADD on the CLI and the admin web) gets the clear
"state store unavailable" error at once and leaves nothing behind (no task on the node, the
upload kept for a later commit). Once the database is back, init/commit/NODE ADD work again,
changes propagate between the replicas again (LISTEN restored), and each replica logged the
outage and its end once.

This test stops its database server, so it starts its own instead of the session's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pyodm import Node

from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.cluster.store_pg import PostgresStore
from support.admin_env import Cli, wait_for_cli
from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.simnode import SimNode
from support.waiting import within

OUTAGE_S = 5.0
PROMPT_S = 2.0
"""Longest a refused write may take while the database is down (no request waits on it)."""
RECOVERY_S = 15.0
"""Bound on everything working again once the database is back (reconnects by themselves)."""


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


async def eventually(seconds: float, check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.05)


def test_the_store_fails_fast_while_down_and_reconnects_by_itself(own_postgres: PostgresServer) -> None:
    """The store alone: the first failing call starts a probe; then every call fails at once;
    when the server is back the store (pool and leader lock) works again without reopening."""

    async def run() -> None:
        store = await PostgresStore.open(own_postgres.database())
        lock = store.leader_lock()
        try:
            first = await store.insert_node("one", 1, "", False, None, 0)
            assert await lock.acquire()
            await asyncio.to_thread(own_postgres.halt)
            with pytest.raises(StoreUnavailable):
                await store.load_nodes()
            await eventually(PROMPT_S, lambda: asyncio.sleep(0, not store.available), "outage known")
            started = time.monotonic()
            for _ in range(20):
                with pytest.raises(StoreUnavailable):
                    await store.insert_node("two", 2, "", False, None, 1)
            assert time.monotonic() - started < 0.5  # at once: nothing waits on the dead server
            assert not await lock.held()  # its connection went with the server: leadership lost
            assert not await lock.acquire()

            await asyncio.to_thread(own_postgres.resume)
            await eventually(RECOVERY_S, lambda: asyncio.sleep(0, store.available), "store back")
            assert [n.id for n in await store.load_nodes()] == [first]  # nothing half-written
            second = await store.insert_node("two", 2, "", False, None, 1)
            assert [n.id for n in await store.load_nodes()] == [first, second]
            assert await lock.acquire()  # leadership can be taken again
        finally:
            await lock.release()
            await store.close()

    asyncio.run(run())


def cli(cluster: ClusterODM) -> Cli:
    wait_for_cli(cluster)
    client = Cli(cluster.host, cluster.admin_cli_port)
    client.greeting()
    return client


def node_list(cluster: ClusterODM) -> list[str]:
    return [n["name"] for n in httpx.get(f"{cluster.admin_url}/r/node/list", timeout=5).json()]


def timed_post(url: str, **kwargs: object) -> object:
    """POST and return the JSON answer, failing if it took longer than `PROMPT_S`."""
    started = time.monotonic()
    answer = httpx.post(url, timeout=10, **kwargs).json()  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert took < PROMPT_S, f"{url} took {took:.1f} s"
    return answer


def test_replicas_live_through_a_database_outage(tmp_path: Path, own_postgres: PostgresServer) -> None:
    url = own_postgres.database()
    with (
        SimNode(tmp_path, "--processing-seconds", "0.3") as sim,
        SimNode(tmp_path, name="extra") as extra,
        SimNode(tmp_path, name="later") as later,
        ClusterODM(tmp_path, "--db", url, nodes=[sim], name="a").start(wait_nodes=1) as a,
        ClusterODM(tmp_path, "--db", url, nodes=[sim], name="b").start(wait_nodes=1) as b,
    ):
        images = make_images(tmp_path / "images", 2)
        task = Node(a.host, a.port).create_task(images, name="before")
        uuid = str(task.uuid)
        task.wait_for_completion(interval=0.1)
        with psycopg.connect(url, autocommit=True) as conn:  # forwarded: its route is stored
            within(10, lambda: conn.execute("SELECT count(*) FROM routes").fetchone() == (1,), "route")
        for cluster in (a, b):  # B reads the route once: cached from then on
            assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["uuid"] == uuid
        # An upload begun before the outage, to be committed during and after it.
        pending = httpx.post(f"{a.url}/task/new/init", data={"name": "pending"}).json()["uuid"]
        files = [("images", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in images]
        assert httpx.post(f"{a.url}/task/new/upload/{pending}", files=files).json() == {"success": True}
        cli_a, cli_b = cli(a), cli(b)
        try:
            own_postgres.halt()
            down_at = time.monotonic()
            # Noticed at once (the listening connection drops): the first write is already refused.
            within(
                PROMPT_S, lambda: timed_post(f"{b.url}/task/new/init") == {"error": UNAVAILABLE}, "refused"
            )
            for cluster in (a, b):
                assert httpx.get(f"{cluster.url}/readyz").status_code == 503
            rounds = 0
            while time.monotonic() - down_at < OUTAGE_S:
                for cluster in (a, b):
                    assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["uuid"] == uuid
                    assert isinstance(httpx.get(f"{cluster.url}/task/{uuid}/output").json(), list)
                    zipped = httpx.get(f"{cluster.url}/task/{uuid}/download/all.zip")
                    assert zipped.status_code == 200 and zipped.content.startswith(b"PK")
                    assert timed_post(f"{cluster.url}/task/new/init", data={"name": "x"}) == {
                        "error": UNAVAILABLE
                    }
                    assert timed_post(f"{cluster.url}/task/remove", data={"uuid": uuid}) == {
                        "error": UNAVAILABLE
                    }
                    assert timed_post(f"{cluster.url}/task/cancel", data={"uuid": uuid}) == {"success": True}
                assert timed_post(f"{a.url}/task/new/commit/{pending}") == {"error": UNAVAILABLE}
                started = time.monotonic()
                assert cli_b.command(f"NODE ADD {extra.host} {extra.port}") == [f"FAIL: {UNAVAILABLE}"]
                assert cli_a.command("NODE LOCK 1") == [f"FAIL: {UNAVAILABLE}"]
                assert time.monotonic() - started < 2 * PROMPT_S
                web = httpx.post(
                    f"{a.admin_url}/r/node/add", json={"hostname": extra.host, "port": extra.port}
                )
                assert (web.status_code, web.json()) == (503, {"error": UNAVAILABLE})
                rounds += 1
            assert rounds >= 2
            # Nothing was done half-way: the node has only the first task, every replica its node.
            assert [t["uuid"] for t in httpx.get(f"{sim.url}/task/list").json()] == [uuid]
            assert node_list(a) == node_list(b) == [f"{sim.host}:{sim.port}"]
            assert "[L]" not in " ".join(cli_a.command("NODE LIST"))

            own_postgres.resume()
            # The upload waited: its commit goes through once the database answers, though the
            # node still looks offline then (nobody polled it during the outage): it waits in the
            # queue until a leader polls again.
            within(
                RECOVERY_S,
                lambda: httpx.post(f"{a.url}/task/new/commit/{pending}").json() == {"uuid": pending},
                "commit after the outage",
            )
            Node(a.host, a.port).get_task(pending).wait_for_completion(interval=0.1)
            for cluster in (a, b):
                within(RECOVERY_S, lambda c=cluster: httpx.get(f"{c.url}/readyz").status_code == 200, "ready")
            b.wait_online(1, RECOVERY_S)  # a leader polls again (no replica could lead meanwhile)
            second = Node(b.host, b.port).create_task(images, name="after")  # init + upload + commit
            second.wait_for_completion(interval=0.1)
            # Both replicas listen again (each said so), so a change on one shows on the other.
            for cluster in (a, b):
                within(
                    RECOVERY_S,
                    lambda c=cluster: "Hearing the other replicas' changes again" in c.log(),
                    "LISTEN",
                )
            assert cli_b.command(f"NODE ADD {extra.host} {extra.port}") == ["OK"]
            want = [f"{sim.host}:{sim.port}", f"{extra.host}:{extra.port}"]
            within(1.0, lambda: node_list(a) == want, "NODE ADD on B listed by A")
            web = httpx.post(f"{a.admin_url}/r/node/add", json={"hostname": later.host, "port": later.port})
            assert web.json() == {"success": True}
            within(1.0, lambda: len(node_list(b)) == 3, "node added on A's admin web listed by B")
            assert cli_a.command("NODE DEL 3") == ["OK"]
            within(1.0, lambda: node_list(b) == want, "NODE DEL on A shown by B")
            # The removal the outage refused works now, and B hears of it.
            assert httpx.post(f"{a.url}/task/remove", data={"uuid": uuid}).json() == {"success": True}
            within(1.0, lambda: "error" in httpx.get(f"{b.url}/task/{uuid}/info").json(), "removal heard")
        finally:
            cli_a.close()
            cli_b.close()
        for cluster in (a, b):  # one line when it went, one when it came back: not one per request
            log = cluster.log()
            assert log.count("Routes this replica has cached are still served") == 1, log[-3000:]
            assert log.count("answers again after") == 1, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
