"""This process as one replica of a cluster: its heartbeat, the replicas it sees, and leadership.

Several clusterodm processes on one PostgreSQL database serve one cluster, but some jobs must run
once per cluster, not once per process: polling the nodes' health, the autoscaler's vacuum, route
and task pruning. The replica holding the store's leader lock (a PostgreSQL advisory lock; on
SQLite the one process always holds it) runs them; the others try to take the lock every
heartbeat, so when the leader dies another one leads within a few seconds. Every replica writes
a heartbeat to the `replicas` table every 2 s; one silent for 10 s counts as dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from clusterodm.cluster.store import ReplicaRecord, Store

log = logging.getLogger("clusterodm.replicas")

Job = Callable[[], Coroutine[Any, Any, None]]

HEARTBEAT_S = 2.0
"""How often a replica writes its heartbeat and (unless it leads) tries to take the leader lock."""
DEAD_AFTER_MS = 10_000
"""A replica whose last heartbeat is older than this counts as dead."""
FORGET_AFTER_MS = 3_600_000
"""The leader unregisters replicas dead for this long (they stay listed as dead until then)."""
STOP_WAIT_S = 3.0
"""Longest wait for the leader-only jobs to end once leadership is lost."""


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A replica as the admin shows it: its record, whether it is alive, leads, and is this process."""

    id: str
    address: str
    started_ms: int
    heartbeat_age_ms: int
    alive: bool
    leader: bool
    this: bool


class Replica:
    """This process's registration and leadership; `run()` is its background job."""

    def __init__(
        self,
        store: Store,
        address: str,
        *,
        replica_id: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        address_given: bool = True,
    ) -> None:
        self.id = replica_id or secrets.token_hex(4)
        self.address = address
        self.heartbeat_s = heartbeat_s
        self._store = store
        self._lock = store.leader_lock()
        self._leader_jobs: list[Job] = []
        self._running: list[asyncio.Task[None]] = []
        self.leading = False
        """True while this replica holds the leader lock and runs the leader-only jobs."""
        self.records: list[ReplicaRecord] = []
        """The replicas as last read from the store (every heartbeat)."""
        self._store_ok = True
        self._address_checked = address_given
        """False while a derived address has not been pointed out yet (once others are seen)."""

    def add_leader_job(self, job: Job) -> None:
        """A job to run only while this replica leads (started again at each new leadership)."""
        self._leader_jobs.append(job)

    # -- what the admin and the metrics read -----------------------------------------------------

    def views(self) -> list[ReplicaView]:
        """Every known replica, this one first; only a live replica can be the leader."""
        views = []
        for record in self.records:
            this = record.id == self.id
            alive = record.heartbeat_age_ms <= DEAD_AFTER_MS
            leader = self.leading if this else (record.leader and alive)
            views.append(
                ReplicaView(
                    record.id, record.address, record.started_ms, record.heartbeat_age_ms, alive, leader, this
                )
            )
        views.sort(key=lambda v: (not v.this, v.started_ms, v.id))
        return views

    async def current(self) -> list[ReplicaView]:
        """`views()` from a fresh read of the store (the last heartbeat's read if the store fails)."""
        with contextlib.suppress(Exception):
            self.records = await self._store.load_replicas()
        return self.views()

    def alive_count(self) -> int:
        """Live replicas (this one included, even before its first heartbeat was read back)."""
        others = sum(1 for v in self.views() if v.alive and not v.this)
        return others + 1

    # -- the background job ------------------------------------------------------------------------

    async def run(self) -> None:
        """Beat, and take or check leadership, every `heartbeat_s` until cancelled."""
        log.info("Replica %s registers as %s", self.id, self.address)
        try:
            while True:
                await self.beat()
                await asyncio.sleep(self.heartbeat_s)
        finally:
            await self._stop_jobs()

    async def beat(self) -> None:
        """One round: settle leadership first (so the heartbeat tells the truth), then beat."""
        try:
            holds = await (self._lock.held() if self.leading else self._lock.acquire())
        except Exception:
            log.exception("Checking the leader lock failed")
            holds = False
        if holds and not self.leading:
            self._gain()
        elif self.leading and not holds:
            await self._lose()
        try:
            await self._store.heartbeat(self.id, self.address, leader=self.leading)
            self.records = await self._store.load_replicas()
            if self.leading:
                gone = [r.id for r in self.records if r.heartbeat_age_ms > FORGET_AFTER_MS]
                if gone:
                    await self._store.delete_replicas(gone)
                alive = [r.id for r in self.records if r.heartbeat_age_ms <= DEAD_AFTER_MS]
                if dropped := await self._store.drop_stale_claims([*alive, self.id]):
                    log.info("Freed %d node slot(s) claimed by forwards of dead replicas", dropped)
        except Exception as exc:
            if self._store_ok:
                log.warning(
                    "Replica %s could not write its heartbeat (%s); retrying every %g s",
                    self.id,
                    exc,
                    self.heartbeat_s,
                )
            self._store_ok = False
            return
        if not self._store_ok:
            log.info("Replica %s writes its heartbeat again", self.id)
        self._store_ok = True
        if not self._address_checked and self.alive_count() > 1:
            self._address_checked = True
            log.warning(
                "Other replicas share this database and no --replica-address is set: they are told "
                "to reach this one at %s; set --replica-address if that is not right",
                self.address,
            )

    def _gain(self) -> None:
        self.leading = True
        log.info(
            "Replica %s (%s) leads the cluster: it runs the health polls, pruning and the autoscaler",
            self.id,
            self.address,
        )
        loop = asyncio.get_running_loop()
        for job in self._leader_jobs:
            task = loop.create_task(job())
            task.add_done_callback(_report_failure)
            self._running.append(task)

    async def _lose(self) -> None:
        self.leading = False
        log.warning(
            "Replica %s lost the leadership (its database connection went away); it stops the "
            "leader's jobs and tries to lead again every %g s",
            self.id,
            self.heartbeat_s,
        )
        await self._stop_jobs()

    async def _stop_jobs(self) -> None:
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=STOP_WAIT_S)

    async def close(self) -> None:
        """Shutdown: stop the leader's jobs, hand leadership on at once, and unregister."""
        await self._stop_jobs()
        self.leading = False
        with contextlib.suppress(Exception):
            await self._lock.release()
        with contextlib.suppress(Exception):
            await self._store.delete_replicas([self.id])


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("leader job failed: %r", task.exception(), exc_info=task.exception())
