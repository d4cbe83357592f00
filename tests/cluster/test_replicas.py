"""`Replica`: leader-only jobs run exactly while leadership is held, on a real PostgreSQL (two
replicas, a leader whose lock connection is cut) and on SQLite (always the leader)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from clusterodm.cluster import store_pg
from clusterodm.cluster.replicas import Replica
from clusterodm.cluster.store_pg import PostgresStore
from clusterodm.cluster.store_sqlite import SqliteStore
from support.aio import async_test
from support.postgres import PostgresServer


class CountingJob:
    """A leader job that records how many copies of it run at once and how often it started."""

    def __init__(self) -> None:
        self.running = 0
        self.starts = 0

    async def __call__(self) -> None:
        self.running += 1
        self.starts += 1
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.running -= 1


async def settle() -> None:
    """Let freshly created job tasks reach their first await."""
    for _ in range(3):
        await asyncio.sleep(0)


@async_test
async def test_sqlite_process_leads_and_stops_its_jobs_at_close(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite3", exclusive=True)
    replica = Replica(store, "http://127.0.0.1:3000")
    job = CountingJob()
    replica.add_leader_job(job)
    await replica.beat()
    await settle()
    assert replica.leading and job.running == 1
    await replica.beat()  # still leading: the job is not started twice
    await settle()
    assert (job.running, job.starts) == (1, 1)
    (view,) = replica.views()
    assert view.this and view.leader and view.alive and view.address == "http://127.0.0.1:3000"
    await replica.close()
    assert job.running == 0 and not replica.leading
    assert await store.load_replicas() == []  # unregistered
    await store.close()


@async_test
async def test_leader_jobs_follow_the_lock_between_two_replicas(postgres: PostgresServer) -> None:
    url = postgres.database()
    stores = [await PostgresStore.open(url), await PostgresStore.open(url)]
    jobs = [CountingJob(), CountingJob()]
    first, second = (Replica(s, f"http://r{i}:3000", replica_id=f"r{i}") for i, s in enumerate(stores))
    for replica, job in zip((first, second), jobs, strict=True):
        replica.add_leader_job(job)
    await first.beat()
    await second.beat()
    await settle()
    assert (first.leading, second.leading) == (True, False)
    assert [j.running for j in jobs] == [1, 0]
    assert [(v.id, v.leader) for v in await second.current()] == [("r1", False), ("r0", True)]
    assert second.alive_count() == 2

    # The leader's lock connection is cut (database restart, network): it stops its jobs at its
    # next check, and the other replica leads at one of its next tries.
    postgres.execute(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
        f"AND objid::bigint = {store_pg.LEADER_LOCK & 0xFFFFFFFF}",
    )
    for _ in range(100):  # the server ends the session a moment after the call: bounded retries
        await first.beat()
        if not first.leading:
            break
        await asyncio.sleep(0.05)
    assert not first.leading and jobs[0].running == 0
    for _ in range(100):
        await second.beat()
        if second.leading:
            break
        await asyncio.sleep(0.05)
    await first.beat()  # tries again, and finds the lock taken
    await settle()
    assert (first.leading, second.leading) == (False, True)
    assert [j.running for j in jobs] == [0, 1] and jobs[0].starts == 1
    assert [(v.id, v.leader) for v in await first.current()] == [("r0", False), ("r1", True)]
    for replica in (first, second):
        await replica.close()
    for store in stores:
        await store.close()


@async_test
async def test_dead_replicas_are_shown_dead_then_forgotten_by_the_leader(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await SqliteStore.open(path)
    replica = Replica(store, "http://me:3000", replica_id="me")
    await replica.beat()
    now_ms = int(time.time() * 1000)
    with sqlite3.connect(path) as db:  # two replicas that stopped beating: 20 s and 2 h ago
        db.execute("INSERT INTO replicas VALUES ('quiet', 'http://q:3000', 0, ?, 1)", (now_ms - 20_000,))
        db.execute("INSERT INTO replicas VALUES ('gone', 'http://g:3000', 0, ?, 0)", (now_ms - 7_200_000,))
    await replica.beat()  # the leader forgets what was silent for an hour, after this read
    views = {v.id: v for v in replica.views()}
    assert (views["quiet"].alive, views["quiet"].leader) == (False, False)  # dead: never the leader
    assert views["gone"].alive is False and views["me"].leader
    assert replica.alive_count() == 1
    assert [r.id for r in await store.load_replicas()] == ["quiet", "me"]  # started 0 sorts first
    await replica.close()
    await store.close()
