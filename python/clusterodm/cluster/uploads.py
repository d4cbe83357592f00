"""Which replica holds each upload session, kept in the shared store (PostgreSQL replicas only).

An upload session's files are on the disk of the replica that answered its `init`, so with
several replicas behind a load balancer without stickiness, an `upload` or `commit` can reach a
replica that does not have them. Each replica records the sessions it opens (`claim`) and forgets
them once they are dropped or forwarded (`release`, batched in the background); another replica
asks `owner` on a miss and sends the request there (`proxy/handoff.py`). A restarted replica takes
the sessions on its disk back under its new id (`adopt`). The leader forgets the sessions of
replicas that are gone (`run_cleanup`): their files went with them, so their clients must start
again, and a task such a replica had committed but not yet handed to a node is failed, saying so
(else it would show as launching, and count as running, forever). With SQLite there is one
process and nothing of this runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable

from clusterodm.cluster.batching import DelayedFlush
from clusterodm.cluster.replicas import DEAD_AFTER_MS
from clusterodm.cluster.store import Store, UploadOwner
from clusterodm.cluster.tasks import TaskTable
from clusterodm.nodeodm.status import ACTIVE_STATUSES, TaskStatus, status_code

log = logging.getLogger("clusterodm.uploads")

RELEASE_DELAY_S = 0.5
"""Releases are written in batches this long after the first one."""
CLEANUP_INTERVAL_S = 5.0
"""How often the leader looks for sessions of gone replicas."""
STRANDED = (
    "The clusterodm replica holding this task's uploaded files is gone, and the files with it, "
    "before the task reached a node. Please create the task again."
)


def token_digest(token: str) -> bytes:
    """What the store keeps of a session's token (never the token itself)."""
    return hashlib.sha256(token.encode()).digest()


def owner_alive(owner: UploadOwner) -> bool:
    """The holding replica is registered and its heartbeat is recent."""
    age = owner.heartbeat_age_ms
    return owner.address is not None and age is not None and age <= DEAD_AFTER_MS


class UploadOwners:
    """This replica's claims on upload sessions, and look-ups of other replicas' ones."""

    def __init__(self, store: Store, replica_id: str, tasks: TaskTable) -> None:
        self.replica_id = replica_id
        self._store = store
        self._tasks = tasks
        self._released: set[str] = set()
        self._later = DelayedFlush(self.flush, RELEASE_DELAY_S, "released upload sessions")

    async def claim(self, uuid: str, token: str) -> bool:
        """Hold `uuid` (an `init`); False when another replica already holds it. Store errors raise."""
        self._released.discard(uuid)  # a release still pending must not delete the new claim
        return await self._store.claim_upload(uuid, self.replica_id, token_digest(token))

    async def adopt(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Hold these (uuid, token) sessions found on this replica's disk at start."""
        items = [(uuid, token_digest(token)) for uuid, token in sessions]
        if items:
            await self._store.adopt_uploads(items, self.replica_id)
            log.info(
                "Replica %s holds the %d upload session(s) found on its disk", self.replica_id, len(items)
            )

    def release(self, uuid: str) -> None:
        """The session is gone from this replica (dropped or forwarded): forget it soon."""
        self._released.add(uuid)
        self._later.schedule()

    async def flush(self) -> None:
        """Write the pending releases (kept for the next try if the store fails)."""
        self._later.cancel()
        batch, self._released = self._released, set()
        if not batch:
            return
        try:
            await self._store.release_uploads(batch, self.replica_id)
        except BaseException:
            self._released |= batch
            raise

    async def owner(self, uuid: str) -> UploadOwner | None:
        """The replica holding `uuid` (None: none does). Store errors raise."""
        return await self._store.upload_owner(uuid)

    async def run_cleanup(self) -> None:
        """Leader job: forget the sessions of replicas gone for `DEAD_AFTER_MS`, periodically."""
        while True:
            try:
                dropped = await self._store.drop_dead_uploads(DEAD_AFTER_MS)
            except Exception as exc:
                log.warning("Cannot clean up the upload sessions of gone replicas: %s", exc)
            else:
                await self._fail_stranded([uuid for uuid, _ in dropped])
                by_replica: dict[str, int] = {}
                for _, replica_id in dropped:
                    by_replica[replica_id] = by_replica.get(replica_id, 0) + 1
                for replica_id, count in by_replica.items():
                    log.info(
                        "Forgot %d upload session(s) of replica %s, which is gone with their files "
                        "(their clients are told to start again)",
                        count,
                        replica_id,
                    )
            await asyncio.sleep(CLEANUP_INTERVAL_S)

    async def _fail_stranded(self, uuids: list[str]) -> None:
        """Fail the tasks among `uuids` that were committed but are on no node (their session was
        held until the forward ended, so a task still queued or running here never got there)."""
        if not uuids:
            return
        wanted = set(uuids)
        try:
            # Queued tasks wait for their replica longer (the queue's own rule fails them later).
            wanted -= {row.uuid for row in await self._store.load_queue()}
            for task in await self._store.load_tasks():
                if task.uuid not in wanted or status_code(task.info) not in ACTIVE_STATUSES:
                    continue
                if await self._store.get_route(task.uuid) is not None:
                    continue  # it reached its node just before its replica died
                task.info["status"] = {"code": int(TaskStatus.FAILED), "errorMessage": STRANDED}
                task.output.append(STRANDED)
                await self._tasks.put(task)
                log.warning("Task %s failed: the replica sending it to a node is gone", task.uuid)
        except Exception as exc:
            log.warning("Cannot fail the tasks left by a gone replica: %s", exc)

    async def close(self) -> None:
        """Shutdown: write the releases still pending."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("Cannot record the released upload sessions at shutdown: %s", exc)
        await self._later.wait()
