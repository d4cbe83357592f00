"""Periodic /info polling: the only source of node liveness and ranking inputs.

ClusterODM polls every node at start, every 60 s, before each node selection and on
`NODE UPDATE`; callers use `poll_all()` for the on-demand cases and `run()` for the loop.

A node that does not answer (at start, when added, or when it drops out) is retried sooner than
the next round: after 2 s, then 4 s, 8 s... until the wait reaches the poll interval, so a
cluster started before its nodes has them online within seconds, not after a full minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodes import NodeEvent, NodeRegistry

if TYPE_CHECKING:
    from clusterodm.cluster.slots import Slots

log = logging.getLogger("clusterodm.health")

RETRY_FIRST_S = 2.0
"""First retry of a node that did not answer; each further retry waits twice as long."""


class HealthPoller:
    """Polls nodes' /info and feeds the results to the registry (and through it, the board)."""

    def __init__(
        self,
        registry: NodeRegistry,
        client: NodeClient,
        interval_s: float = 60.0,
        timeout_s: float = 10.0,
        *,
        clock: Clock = now_ms,
    ) -> None:
        self._registry = registry
        self._client = client
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._pending: set[asyncio.Task[bool]] = set()
        self._reported_online: dict[int, bool] = {}
        # Per failing node: the wait before its next retry (absent once it answered), and the
        # task running its retries.
        self._retry_delay: dict[int, float] = {}
        self._retrying: dict[int, asyncio.Task[None]] = {}
        self.on_polled: Callable[[Node, dict[str, Any] | None, str | None], None] | None = None
        """Told every poll result (replicas publish them: only the leader polls every node)."""
        self.slots: Slots | None = None
        """Told each good poll's load (`Slots.seen`), so slot claims are checked against it."""
        registry.on_change.append(self._on_change)

    def _on_change(self, event: NodeEvent, node: Node) -> None:
        if event == "added":  # polled at once instead of waiting for the next round
            self.poll_soon(node)
        elif event == "removed":
            self._retry_delay.pop(node.id, None)
            retrying = self._retrying.pop(node.id, None)
            if retrying is not None:
                retrying.cancel()

    async def poll(self, node: Node) -> bool:
        """Poll one node now; returns whether it answered a good /info."""
        info: dict[str, Any] | None = None
        error: str | None = None
        started = await self._clock_ms()
        try:
            async with asyncio.timeout(self.timeout_s):
                info = await self._client.info(node, timeout_s=self.timeout_s)
        except NodeError as exc:
            error = exc.reason
        except TimeoutError:
            error = f"no /info reply within {self.timeout_s:g} s"
        if self._registry.get(node.id) is not node:
            return False  # removed while we waited
        # Compare with what we last reported: a node also goes offline between two polls, when
        # the window since its last good answer runs out. Read after the wait, so that of two
        # polls running at once (a node added just before the first round) only one reports.
        was_online = self._reported_online.get(node.id, False)
        previous_error = node.last_error
        self._registry.apply_info(node, info, error, self._clock())
        if error is None and started is not None:
            await self._store_load(node, started)  # before the others hear the poll and count again
        if self.on_polled is not None:
            self.on_polled(node, info, error)
        online = node.online(self._clock())
        self._reported_online[node.id] = online
        if was_online and not online:
            log.warning(
                "Node %s went offline (%s); it gets no new tasks until /info answers again", node.name, error
            )
        elif online and not was_online:
            log.info(
                "Node %s is online (%s, queue %s/%s)",
                node.name,
                (info or {}).get("version", "?"),
                node.task_queue_count,
                node.max_parallel_tasks,
            )
        elif error is not None and previous_error is None:
            log.warning("Node %s is not reachable: %s", node.name, error)
        elif error is not None:
            log.debug("Node %s still offline: %s", node.name, error)
        return error is None

    async def _clock_ms(self) -> int | None:
        """The store's time before a poll asks (None without a store, or when it fails)."""
        if self.slots is None:
            return None
        try:
            return await self.slots.clock_ms()
        except Exception as exc:
            log.debug("No store clock for a poll (%s): its load is not stored", exc)
            return None

    async def _store_load(self, node: Node, started_ms: int) -> None:
        assert self.slots is not None
        try:
            await self.slots.seen(node, started_ms)
        except Exception as exc:  # the next poll stores it again
            log.debug("Cannot store the load of node %s: %s", node.name, exc)

    async def poll_all(self) -> int:
        """Poll every node concurrently; returns how many answered."""
        nodes = self._registry.nodes
        if not nodes:
            return 0
        results = await asyncio.gather(*(self.poll(n) for n in nodes))
        return sum(results)

    def poll_soon(self, node: Node) -> asyncio.Task[bool] | None:
        """Schedule a poll of `node` in the background, retried with backoff if it fails
        (None when no event loop is running)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        task = loop.create_task(self._poll_or_retry(node), name=f"poll {node.name}")
        self._pending.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._pending.discard)
        return task

    async def _poll_or_retry(self, node: Node) -> bool:
        """Poll `node`; when it fails, retry it with backoff in the background."""
        if await self.poll(node):
            self._retry_delay.pop(node.id, None)
            return True
        self._start_retries(node)
        return False

    def _start_retries(self, node: Node) -> None:
        if node.id in self._retrying or self._registry.get(node.id) is not node:
            return
        delay = self._retry_delay.setdefault(node.id, RETRY_FIRST_S)
        if delay >= self.interval_s:
            return  # backed off to the interval already: the regular rounds are as frequent
        task = asyncio.get_running_loop().create_task(self._retry(node), name=f"retry {node.name}")
        self._retrying[node.id] = task
        task.add_done_callback(lambda _: self._retrying.pop(node.id, None))

    async def _retry(self, node: Node) -> None:
        """Poll a failing node again after 2 s, 4 s, 8 s... until it answers or the wait
        reaches the poll interval."""
        while (delay := self._retry_delay.get(node.id, self.interval_s)) < self.interval_s:
            await asyncio.sleep(delay)
            if self._registry.get(node.id) is not node:
                return
            self._retry_delay[node.id] = delay * 2
            log.debug("Node %s: retrying /info after %g s", node.name, delay)
            if await self.poll(node):
                self._retry_delay.pop(node.id, None)
                return

    async def run(self) -> None:
        """Poll all nodes now and then every `interval_s` until cancelled; a node that fails is
        retried with backoff in between."""
        try:
            while True:
                try:
                    nodes = self._registry.nodes
                    answered = await asyncio.gather(*(self._poll_or_retry(n) for n in nodes))
                    log.debug("Health round: %d of %d node(s) answered", sum(answered), len(nodes))
                except Exception:
                    log.exception("Node health round failed; retrying in %g s", self.interval_s)
                await asyncio.sleep(self.interval_s)
        finally:
            for task in [*self._pending, *self._retrying.values()]:
                task.cancel()
