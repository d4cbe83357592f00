"""Housekeeping for the route index and the local task table.

Access times are refreshed in memory on every lookup and only written in bulk, so something has
to write them periodically and at shutdown; old entries are pruned (ClusterODM: hourly, routes
after 5 days, tasks after 2 days; here 30 days for both since the entries are durable and small).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from clusterodm.cluster.routing import DEFAULT_MAX_AGE_MS, RouteIndex
from clusterodm.cluster.store import StoreUnavailable
from clusterodm.cluster.tasks import TaskTable

log = logging.getLogger("clusterodm.maintenance")

LiveCheck = Callable[[list[str]], Awaitable[set[str]]]
"""Given stale route uuids, returns those whose task still runs (they are kept)."""


class Maintenance:
    """Periodic flush + prune of `routes` and `tasks`: every replica runs `run_flushes()`, the
    leader `run_prunes()`."""

    def __init__(
        self,
        routes: RouteIndex,
        tasks: TaskTable,
        *,
        flush_interval_s: float = 60.0,
        prune_interval_s: float = 3600.0,
        route_max_age_ms: int = DEFAULT_MAX_AGE_MS,
        task_max_age_ms: int = DEFAULT_MAX_AGE_MS,
        live_check: LiveCheck | None = None,
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self.flush_interval_s = flush_interval_s
        self.prune_interval_s = prune_interval_s
        self.route_max_age_ms = route_max_age_ms
        self.task_max_age_ms = task_max_age_ms
        self._live_check = live_check

    def set_live_check(self, check: LiveCheck) -> None:
        self._live_check = check

    async def flush(self) -> None:
        """Write batched access times and output lines (also call this at shutdown)."""
        await self._routes.flush()
        await self._tasks.flush()

    async def prune(self) -> tuple[list[str], list[str]]:
        """Drop old routes (except live ones) and local tasks; returns (route uuids, task uuids) removed."""
        live: set[str] = set()
        if self._live_check is not None:
            stale = await self._routes.stale(self.route_max_age_ms)
            if stale:
                live = await self._live_check(stale)
        routes = await self._routes.prune(self.route_max_age_ms, live.__contains__)
        tasks = await self._tasks.prune(self.task_max_age_ms)
        return routes, tasks

    async def run(self) -> None:
        """Both loops at once: what one process that is the whole cluster runs."""
        await asyncio.gather(self.run_flushes(), self.run_prunes())

    async def run_flushes(self) -> None:
        """Flush every `flush_interval_s` until cancelled (every replica: its own batched writes)."""
        while True:  # the final flush is the owner's, at shutdown (Cluster.close)
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except StoreUnavailable:
                pass  # the store logs its outage once; what was not written is kept for the next round
            except Exception:
                log.exception("Writing access times failed; retrying in %g s", self.flush_interval_s)

    async def run_prunes(self) -> None:
        """Prune now and every `prune_interval_s` until cancelled (the leader's job: once per cluster)."""
        while True:
            try:
                await self.flush()  # so that fresh access times count before anything is judged old
                await self.prune()
            except StoreUnavailable:
                pass  # the store logs its outage once; the next round prunes
            except Exception:
                log.exception("Pruning old routes and tasks failed; retrying in %g s", self.prune_interval_s)
            await asyncio.sleep(self.prune_interval_s)
