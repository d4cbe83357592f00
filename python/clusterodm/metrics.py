"""Prometheus metrics of one clusterodm process, in a registry the process owns (`GET /metrics`).

Three kinds of figures, each measured where it costs least:
- events off the hot path (forwards retried or failed, machines created, queue waits): ordinary
  prometheus_client counters and histograms, bumped where they happen;
- the hot path's two figures (API requests by route class and status, routed latency by node):
  plain numbers in slots prepared once, turned into counter and histogram families when
  Prometheus scrapes. A prometheus_client child takes a lock on every `inc` (~0.5 us) and walks its
  buckets on every `observe` (~1 us); a slot costs ~0.1 us, and every request runs on the one
  event loop thread, so no lock is needed (bench/README.md, "Metrics on / off");
- states and running totals kept by their owners (nodes online/locked, free slots, queued tasks,
  forwards in flight, upload bytes received and forwarded, store errors, replicas): read from
  the objects that hold them at scrape time, never kept up to date by the metrics.

No label carries a task uuid or a token: nodes are named `host:port`, requests by route class.
The registry is this object's own (not prometheus_client's global one), so tests and several
clusterodm instances in one process never share a figure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

from clusterodm import __version__

if TYPE_CHECKING:
    from clusterodm.cluster.node import Node
    from clusterodm.cluster.nodes import NodeEvent, NodeRegistry

ASGIApp = Callable[[Any, Any, Any], Any]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; routed requests are mostly small JSON answers from a node on the same network."""
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Seconds a task waits before a node takes it: from nothing to an autoscaled machine's start."""


class RequestCounts:
    """API requests by (route class, status), counted on the event loop thread (hot path)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def add(self, route: str, status: int) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1


class Timings:
    """One histogram's buckets (not cumulative; the last one is +Inf) and sum, in seconds."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # `le` bounds are inclusive
        self.sum += seconds


class NodeTimings:
    """Routed-request latency per node, by node id (a node removed takes its series with it)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, Timings]] = {}

    def of(self, node: Node) -> Timings:
        entry = self._by_id.get(node.id)
        if entry is None:
            entry = self._by_id[node.id] = (node.name, Timings())
        return entry[1]

    def forget(self, node_id: int) -> None:
        self._by_id.pop(node_id, None)

    def items(self) -> list[tuple[str, Timings]]:
        return list(self._by_id.values())


class Forwards(Protocol):
    """What the metrics read of the pipeline at scrape time."""

    bytes_received: int
    """Bytes of upload requests (/task/new, /task/new/upload) received from clients."""

    @property
    def forwards_in_flight(self) -> int: ...

    @property
    def forwarded_bytes(self) -> int: ...

    @property
    def queued_tasks(self) -> int: ...


class Replicas(Protocol):
    """What the metrics read of this process's replica registration."""

    leading: bool

    def alive_count(self) -> int: ...


class StoreErrors(Protocol):
    errors: int
    """Failed store transactions since the start."""
    route_reads: int
    """Route look-ups that missed the in-memory table and asked the store."""
    upload_owner_reads: int
    """Look-ups of the replica holding an upload session (unknown uuids on PostgreSQL replicas)."""


class Metrics:
    """Every metric of the process; `watch` connects the objects whose state is read at scrape time."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        """False with `--no-metrics`: nothing served, the hot path counts nothing."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = RequestCounts()
        self.routed = NodeTimings()
        self.forward_retries = Counter(
            "clusterodm_forward_retries",
            "Forwards of a committed task to a node started again (on another node) after an attempt failed",
            registry=r,
        )
        self.forwards_failed = Counter(
            "clusterodm_forwards_failed",
            "Committed tasks that no node took after every attempt (the task is FAILED)",
            registry=r,
        )
        self.forwards_completed = Counter(
            "clusterodm_forwards_completed", "Committed tasks handed to a node", registry=r
        )
        self.queue_wait = Histogram(
            "clusterodm_queue_wait_seconds",
            "Time a task waited for a node to take it, by queue (forward: a committed task waiting "
            "for a node to be online; proxy: a task in clusterodm's own queue until it was sent)",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.forward_wait = self.queue_wait.labels("forward")
        self.machines_created = Counter(
            "clusterodm_autoscaler_machines_created", "Machines the autoscaler created and set up", registry=r
        )
        self.machines_destroyed = Counter(
            "clusterodm_autoscaler_machines_destroyed",
            "Machines the autoscaler destroyed after their task (or on request)",
            registry=r,
        )
        self.machines_failed = Counter(
            "clusterodm_autoscaler_machines_failed",
            "Machine creations that failed (the machine was removed again)",
            registry=r,
        )
        ProcessCollector(registry=r)

    def watch(self, nodes: NodeRegistry, forwards: Forwards, store: StoreErrors, replicas: Replicas) -> None:
        """Read these objects at every scrape (see `StateCollector`)."""
        self.registry.register(StateCollector(self, nodes, forwards, store, replicas))
        nodes.on_change.append(self._node_changed)

    def _node_changed(self, event: NodeEvent, node: Node) -> None:
        if event == "removed":
            self.routed.forget(node.id)

    def asgi_app(self) -> ASGIApp:
        """`GET /metrics` in the Prometheus text format (or OpenMetrics, as the scraper asks)."""
        return make_asgi_app(self.registry)


class StateCollector(Collector):
    """The figures computed when Prometheus scrapes: the hot path's counts, nodes, pipeline, store."""

    def __init__(
        self,
        metrics: Metrics,
        nodes: NodeRegistry,
        forwards: Forwards,
        store: StoreErrors,
        replicas: Replicas,
    ) -> None:
        self._metrics = metrics
        self._nodes = nodes
        self._forwards = forwards
        self._store = store
        self._replicas = replicas

    def collect(self) -> Iterable[Metric]:
        yield from self._requests()
        yield from self._node_states()
        forwards = self._forwards
        yield _gauge(
            "clusterodm_forwards_in_flight",
            "Committed tasks being sent to a node",
            forwards.forwards_in_flight,
        )
        yield CounterMetricFamily(
            "clusterodm_upload_received_bytes",
            "Bytes of task upload requests received from clients (/task/new, /task/new/upload)",
            value=forwards.bytes_received,
        )
        yield CounterMetricFamily(
            "clusterodm_upload_forwarded_bytes",
            "Bytes of upload bodies sent to nodes (files and multipart framing; retries count again)",
            value=forwards.forwarded_bytes,
        )
        yield CounterMetricFamily(
            "clusterodm_store_errors",
            "Store transactions that failed (rolled back)",
            value=self._store.errors,
        )
        yield CounterMetricFamily(
            "clusterodm_store_route_reads",
            "Route look-ups that missed this process's route table and asked the store (with "
            "PostgreSQL replicas: routes other replicas created; unknown uuids are asked once a few seconds)",
            value=self._store.route_reads,
        )
        yield CounterMetricFamily(
            "clusterodm_store_upload_owner_reads",
            "Look-ups of the replica holding an upload session, for task uuids this process does "
            "not know (PostgreSQL replicas; unknown uuids are asked once a few seconds)",
            value=self._store.upload_owner_reads,
        )
        yield _gauge(
            "clusterodm_replicas_alive",
            "clusterodm processes serving this cluster (heartbeat in the last 10 s, this one included)",
            self._replicas.alive_count(),
        )
        yield _gauge(
            "clusterodm_leader",
            "1 when this process runs the cluster-wide jobs (polls, pruning, autoscaler)",
            int(self._replicas.leading),
        )
        info = GaugeMetricFamily("clusterodm_build_info", "clusterodm version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _requests(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "clusterodm_api_requests",
            "NodeODM API requests by route class and HTTP status (0: no answer, the client left first)",
            labels=["route", "status"],
        )
        for (route, status), count in list(self._metrics.requests.counts.items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        routed = HistogramMetricFamily(
            "clusterodm_routed_request_seconds",
            "Requests forwarded to the node that has the task, until the answer was passed on, by node",
            labels=["node"],
        )
        for name, timings in self._metrics.routed.items():
            routed.add_metric([name], _cumulative(timings), timings.sum)
        yield routed

    def _node_states(self) -> Iterable[Metric]:
        registry = self._nodes
        now = registry.now()
        labels = ["node"]
        online = GaugeMetricFamily(
            "clusterodm_node_online", "1 when the node answered its last polls", labels=labels
        )
        locked = GaugeMetricFamily(
            "clusterodm_node_locked", "1 when the node takes no new tasks", labels=labels
        )
        slots = GaugeMetricFamily("clusterodm_node_slots", "The node's maxParallelTasks", labels=labels)
        free = GaugeMetricFamily(
            "clusterodm_node_free_slots",
            "Slots left: maxParallelTasks - taskQueueCount - tasks being forwarded there, at least 0",
            labels=labels,
        )
        tasks = GaugeMetricFamily(
            "clusterodm_node_tasks", "Tasks running or queued on the node (its taskQueueCount)", labels=labels
        )
        counts = {"online": 0, "locked": 0, "free": 0, "queued": 0}
        for node in registry.nodes:
            is_online = node.online(now)
            _, max_parallel, queue = node.board_values()
            free_slots = registry.free_slots(node)
            name = [node.name]
            online.add_metric(name, int(is_online))
            locked.add_metric(name, int(node.locked))
            slots.add_metric(name, max_parallel)
            free.add_metric(name, free_slots)
            tasks.add_metric(name, queue)
            counts["locked"] += node.locked
            if is_online:
                counts["online"] += 1
                counts["queued"] += max(0, queue - max_parallel)
                if not node.locked:
                    counts["free"] += free_slots
        yield from (online, locked, slots, free, tasks)
        yield _gauge("clusterodm_nodes", "Nodes registered", len(registry.nodes))
        yield _gauge("clusterodm_nodes_online", "Nodes online", counts["online"])
        yield _gauge("clusterodm_nodes_locked", "Nodes locked (online or not)", counts["locked"])
        yield _gauge("clusterodm_free_slots", "Free slots of the online, unlocked nodes", counts["free"])
        queue_length = GaugeMetricFamily(
            "clusterodm_queue_length",
            "Tasks waiting for a slot, by queue (nodes: queued on online nodes beyond their parallel "
            "slots; proxy: waiting in clusterodm's own queue)",
            labels=["queue"],
        )
        queue_length.add_metric(["nodes"], counts["queued"])
        queue_length.add_metric(["proxy"], self._forwards.queued_tasks)
        yield queue_length


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _cumulative(timings: Timings) -> list[tuple[str, float]]:
    """Prometheus buckets (`le` -> observations at or below it) from our per-bucket counts."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS, INF), timings.buckets, strict=True):
        running += count
        out.append((floatToGoString(bound), running))
    return out
