"""Housekeeping for the route index and the local task table.

Access times are refreshed in memory on every lookup and only written in bulk, so something has
to write them periodically and at shutdown; old entries are pruned (ClusterODM: hourly, routes
after 5 days, tasks after 2 days; here 30 days for both since the entries are durable and small).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from clusterodm.cluster.routing import DEFAULT_MAX_AGE_MS, RouteIndex
from clusterodm.cluster.tasks import TaskTable

log = logging.getLogger("clusterodm.maintenance")


class Maintenance:
    """Periodic flush + prune of `routes` and `tasks`; run `run()` as a background job."""

    def __init__(
        self,
        routes: RouteIndex,
        tasks: TaskTable,
        *,
        flush_interval_s: float = 60.0,
        prune_interval_s: float = 3600.0,
        route_max_age_ms: int = DEFAULT_MAX_AGE_MS,
        task_max_age_ms: int = DEFAULT_MAX_AGE_MS,
        is_live: Callable[[str], bool] | None = None,
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self.flush_interval_s = flush_interval_s
        self.prune_interval_s = prune_interval_s
        self.route_max_age_ms = route_max_age_ms
        self.task_max_age_ms = task_max_age_ms
        self._is_live = is_live

    def flush(self) -> None:
        """Write batched access times and output lines (also call this at shutdown)."""
        self._routes.flush()
        self._tasks.flush()

    def prune(self) -> tuple[list[str], list[str]]:
        """Drop old routes and local tasks; returns (route uuids, task uuids) removed."""
        routes = self._routes.prune(self.route_max_age_ms, self._is_live)
        tasks = self._tasks.prune(self.task_max_age_ms)
        return routes, tasks

    async def run(self) -> None:
        """Prune now and every `prune_interval_s`, flush every `flush_interval_s`, until cancelled."""
        last_prune = float("-inf")
        try:
            while True:
                try:
                    if time.monotonic() - last_prune >= self.prune_interval_s:
                        last_prune = time.monotonic()
                        self.prune()
                    self.flush()
                except Exception:
                    log.exception("Route/task housekeeping failed; retrying in %g s", self.flush_interval_s)
                await asyncio.sleep(self.flush_interval_s)
        finally:
            self.flush()
