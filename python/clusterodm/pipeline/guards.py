"""Abuse and fairness guards for task creation: flood monitor and running-task counting (spec 2.6)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clusterodm.cluster.nodeclient import NodeError
from clusterodm.nodeodm.status import ACTIVE_STATUSES, TaskStatus

if TYPE_CHECKING:
    from clusterodm.services import Cluster

log = logging.getLogger("clusterodm.pipeline")

FLOOD_DECAY_INTERVAL_S = 15 * 60
FLOOD_DECAY_FACTOR = 0.66
FLOODING = (
    "Uuh, slow down! It seems like you are sending a lot of tasks. Check that your connection is not "
    "dropping, or wait 15 minutes and try again."
)
STATUS_TIMEOUT_S = 5.0


def max_concurrent_reached(limit: int) -> str:
    return (
        f"Reached maximum number of concurrent tasks: {limit}. Please wait until other tasks have "
        "finished, then restart the task."
    )


class FloodMonitor:
    """Per-token count of inits not followed by a commit; forgiven by a third every 15 minutes.

    The forgiveness is applied lazily (on every use, for each whole interval elapsed), so there is
    no timer to run and a test can inject `clock` and `decay_interval_s`.
    """

    def __init__(
        self,
        limit: int,
        decay_interval_s: float = FLOOD_DECAY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.decay_interval_s = decay_interval_s
        self._clock = clock
        self._last_decay = clock()
        self._counts: dict[str, int] = {}

    def count(self, token: str) -> int:
        self._catch_up()
        return self._counts.get(token or "default", 0)

    def flooding(self, token: str) -> bool:
        return self.limit > 0 and self.count(token) > self.limit

    def started(self, token: str) -> None:
        if self.limit > 0:
            key = token or "default"
            self._counts[key] = self.count(key) + 1

    def committed(self, token: str) -> None:
        key = token or "default"
        if self.count(key) > 0:
            self._counts[key] -= 1

    def _catch_up(self) -> None:
        now = self._clock()
        while now - self._last_decay >= self.decay_interval_s:
            self._last_decay += self.decay_interval_s
            self.decay()
            if not self._counts:
                self._last_decay = now - (now - self._last_decay) % self.decay_interval_s
                break

    def decay(self) -> None:
        """The original's forgiveness: counters x0.66 (floored), dropped once they reach 0."""
        for key, value in list(self._counts.items()):
            value = int(value * FLOOD_DECAY_FACTOR)
            if value <= 0:
                del self._counts[key]
            else:
                self._counts[key] = value


async def running_tasks(cluster: Cluster, token: str) -> int:
    """Tasks of `token` that are queued or running, asked of their nodes (not a leaky counter).

    Forwards still in the pipeline count too (their local entry is RUNNING). A node that does not
    answer does not count its tasks: a dead node should not block a user.
    """
    owner = cluster.routes.owner_id(token)
    local = 0
    for uuid in cluster.tasks.for_owner(owner):
        task = cluster.tasks.get(uuid)
        status = task.info.get("status") if task is not None else None
        if isinstance(status, dict) and status.get("code") == TaskStatus.RUNNING:
            local += 1

    async def remote(uuid: str) -> bool:
        route = cluster.routes.peek(uuid)
        if route is None or uuid in cluster.tasks:
            return False
        try:
            info = await asyncio.wait_for(cluster.nodes.task_info(route.node, uuid), STATUS_TIMEOUT_S)
        except (NodeError, TimeoutError):
            return False
        status = info.get("status")
        return isinstance(status, dict) and status.get("code") in ACTIVE_STATUSES

    checks = await asyncio.gather(*(remote(u) for u in cluster.routes.for_owner(token)))
    return local + sum(checks)


async def concurrency_error(cluster: Cluster, token: str, limit: int | None) -> str | None:
    """The refusal when `token` already has `limit` tasks queued or running, else None."""
    if limit is None:
        return None
    if limit <= 0 or await running_tasks(cluster, token) >= limit:
        return max_concurrent_reached(limit)
    return None
