"""Abuse and fairness guards for task creation: flood monitor and running-task counting (spec 2.6)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.tasks import TaskTable

log = logging.getLogger("clusterodm.pipeline")

FLOOD_DECAY_INTERVAL_S = 15 * 60
FLOOD_DECAY_FACTOR = 0.66
FLOODING = (
    "Uuh, slow down! It seems like you are sending a lot of tasks. Check that your connection is not "
    "dropping, or wait 15 minutes and try again."
)


@dataclass(frozen=True)
class Refusal:
    """Why a commit was refused. `retry`: nothing is wrong with the upload, only no node can be
    asked right now, so its files are kept for another commit; otherwise they are deleted, as
    ClusterODM does."""

    message: str
    retry: bool = False


def max_concurrent_reached(limit: int) -> str:
    return (
        f"Reached maximum number of concurrent tasks: {limit}. Please wait until other tasks have "
        "finished, then restart the task."
    )


def flood_key(token: str) -> str:
    """A token's flood counter in a shared store: its SHA-256 (the token itself is never stored)."""
    return hashlib.sha256((token or "default").encode()).hexdigest()


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


def running_tasks(routes: RouteIndex, tasks: TaskTable, registry: NodeRegistry, token: str) -> int:
    """Tasks of `token` that are queued or running, from what the cluster already knows.

    No node is asked (see `cluster/activity.py`): the cost follows the token's active tasks, not
    its routes. Forwards in progress count (their local entry is RUNNING), and so do routed tasks
    last seen queued or running, unless their node is down (offline, and its last poll failed): a
    dead node should not block a user, a slow one should not let a user past the limit.
    """
    owner = routes.known_owner_id(token)
    if owner is None:
        return 0  # a token that never created a task runs none
    return len(active_tasks(routes, tasks, registry, owner))


def active_tasks(routes: RouteIndex, tasks: TaskTable, registry: NodeRegistry, owner: int) -> set[str]:
    """The uuids `running_tasks` counts, by owner id (the proxy queue adds the ones it assigned)."""
    active = tasks.running_of(owner)
    now = registry.now()
    for uuid in routes.active_for(owner):
        if uuid in tasks:
            continue  # a local entry (a forward in progress, or a kept final state) decides
        route = routes.peek(uuid)
        if route is not None and (route.node.last_error is None or route.node.online(now)):
            active.add(uuid)
    return active


def concurrency_error(
    routes: RouteIndex, tasks: TaskTable, registry: NodeRegistry, token: str, limit: int | None
) -> str | None:
    """The refusal when `token` already has `limit` tasks queued or running, else None."""
    if limit is None:
        return None
    if limit <= 0 or running_tasks(routes, tasks, registry, token) >= limit:
        return max_concurrent_reached(limit)
    return None
