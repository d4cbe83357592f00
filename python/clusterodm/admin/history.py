"""The last hour of the cluster in numbers, for the admin web's charts.

Every few seconds a sample is taken of what the process already knows: each node's queue from
its last /info poll (running and queued tasks against its slots), how many tasks are in each
status as far as the cluster has heard, and how many upload bytes clients sent since the last
sample. Samples live in memory only, in a ring buffer sized for the window, so the history costs
the same after a week as after an hour and is gone after a restart (Prometheus, via `/metrics`,
is the place for long-term graphs).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.nodeodm.status import TaskStatus, status_code

if TYPE_CHECKING:
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.tasks import TaskTable

log = logging.getLogger("clusterodm.admin")

DEFAULT_INTERVAL_S = 5.0
MIN_INTERVAL_S = 0.1
"""Shorter intervals (tests use them) are raised to this, which bounds the buffer to 36,000 samples."""
WINDOW_S = 3600.0
MAX_NODES = 64
"""Nodes charted (the first ones by number): a sample stays small whatever the cluster size."""
STATUS_NAMES = {int(s): s.name.lower() for s in TaskStatus}


class NodeLoad(NamedTuple):
    name: str
    running: int | None
    queued: int | None
    slots: int | None
    online: bool


class Sample(NamedTuple):
    at_ms: int
    nodes: tuple[NodeLoad, ...]
    statuses: dict[int, int]
    """Status code -> number of tasks the cluster knows in that status."""
    upload_bytes: int
    """Upload bytes received from clients since the previous sample."""


def node_load(name: str, queue: int | None, slots: int | None, online: bool) -> NodeLoad:
    """Split a node's `taskQueueCount` (queued + running tasks, spec 1) by its slots: a node
    runs up to `maxParallelTasks` tasks and queues the rest."""
    if queue is None:
        return NodeLoad(name, None, None, slots, online)
    running = queue if slots is None else min(queue, max(0, slots))
    return NodeLoad(name, running, queue - running, slots, online)


class History:
    """A ring buffer of samples covering `window_s`, one every `interval_s`."""

    def __init__(
        self,
        registry: NodeRegistry,
        routes: RouteIndex,
        tasks: TaskTable,
        received: Callable[[], int],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        window_s: float = WINDOW_S,
        clock: Clock = now_ms,
    ) -> None:
        self._registry = registry
        self._routes = routes
        self._tasks = tasks
        self._received = received
        """The upload byte counter's current total."""
        self._clock = clock
        self.interval_s = max(MIN_INTERVAL_S, interval_s)
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=math.ceil(window_s / self.interval_s) + 1)
        self._last_received: int | None = None

    def sample(self) -> Sample:
        """Take one sample now and keep it (samples older than the window are dropped)."""
        now = self._clock()
        registry = self._registry
        nodes = tuple(
            node_load(n.name, n.task_queue_count, n.max_parallel_tasks, n.online(now))
            for n in registry.nodes[:MAX_NODES]
        )
        total = self._received()
        sent = 0 if self._last_received is None else max(0, total - self._last_received)
        self._last_received = total
        sample = Sample(now, nodes, self._status_counts(), sent)
        self.samples.append(sample)
        cutoff = now - int(self.window_s * 1000)
        while self.samples and self.samples[0].at_ms < cutoff:
            self.samples.popleft()
        return sample

    def _status_counts(self) -> dict[int, int]:
        """Tasks by their last heard status: routed tasks and local entries still known."""
        routes, tasks, timeline = self._routes, self._tasks, self._routes.timeline
        counts: dict[int, int] = {}
        for uuid, code in timeline.latest():
            if uuid in tasks or uuid in routes:
                counts[code] = counts.get(code, 0) + 1
        for task in tasks.entries():  # entries loaded at start, never changed since
            loaded = status_code(task.info) if task.uuid not in timeline else None
            if loaded is not None:
                counts[loaded] = counts.get(loaded, 0) + 1
        return counts

    def series(self) -> dict[str, Any]:
        """The samples as columns, the shape the page's charts draw (`null` where unknown)."""
        samples = list(self.samples)
        times = [s.at_ms for s in samples]
        rates: list[float] = []
        for i, s in enumerate(samples):
            span_ms = s.at_ms - samples[i - 1].at_ms if i else self.interval_s * 1000
            rates.append(round(s.upload_bytes * 1000 / max(span_ms, 1), 1))
        statuses = {name: [s.statuses.get(code, 0) for s in samples] for code, name in STATUS_NAMES.items()}
        by_name = [{n.name: n for n in s.nodes} for s in samples]
        names: dict[str, None] = {}  # every node charted, in order of appearance
        for loads_now in by_name:
            names.update(dict.fromkeys(loads_now))
        nodes = []
        for name in names:
            loads = [loads_now.get(name) for loads_now in by_name]
            nodes.append(
                {
                    "name": name,
                    "running": [n.running if n else None for n in loads],
                    "queued": [n.queued if n else None for n in loads],
                    "slots": [n.slots if n else None for n in loads],
                    "online": [n.online if n else None for n in loads],
                }
            )
        return {
            "intervalMs": int(self.interval_s * 1000),
            "windowMs": int(self.window_s * 1000),
            "t": times,
            "uploadBytes": [s.upload_bytes for s in samples],
            "uploadRate": rates,
            "statuses": statuses,
            "nodes": nodes,
        }

    async def run(self) -> None:
        """Sample every `interval_s` until cancelled."""
        while True:
            try:
                self.sample()
            except Exception:
                log.exception("Sampling the admin charts failed; trying again in %g s", self.interval_s)
            await asyncio.sleep(self.interval_s)
