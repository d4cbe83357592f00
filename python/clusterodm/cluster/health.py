"""Periodic /info polling: the only source of node liveness and ranking inputs.

ClusterODM polls every node at start, every 60 s, before each node selection and on
`NODE UPDATE`; callers use `poll_all()` for the on-demand cases and `run()` for the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodes import NodeEvent, NodeRegistry

log = logging.getLogger("clusterodm.health")


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
        # A node added at runtime is polled at once instead of waiting for the next round.
        self._reported_online: dict[int, bool] = {}
        registry.on_change.append(self._on_change)

    def _on_change(self, event: NodeEvent, node: Node) -> None:
        if event == "added":
            self.poll_soon(node)

    async def poll(self, node: Node) -> bool:
        """Poll one node now; returns whether it answered a good /info."""
        # Compare with what we last reported: a node also goes offline between two polls,
        # when the window since its last good answer runs out.
        was_online = self._reported_online.get(node.id, False)
        previous_error = node.last_error
        info: dict[str, Any] | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                info = await self._client.info(node, timeout_s=self.timeout_s)
        except NodeError as exc:
            error = exc.reason
        except TimeoutError:
            error = f"no /info reply within {self.timeout_s:g} s"
        if self._registry.get(node.id) is not node:
            return False  # removed while we waited
        self._registry.apply_info(node, info, error, self._clock())
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

    async def poll_all(self) -> int:
        """Poll every node concurrently; returns how many answered."""
        nodes = self._registry.nodes
        if not nodes:
            return 0
        results = await asyncio.gather(*(self.poll(n) for n in nodes))
        return sum(results)

    def poll_soon(self, node: Node) -> asyncio.Task[bool] | None:
        """Schedule a poll of `node` in the background (None when no event loop is running)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        task = loop.create_task(self.poll(node), name=f"poll {node.name}")
        self._pending.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._pending.discard)
        return task

    async def run(self) -> None:
        """Poll all nodes now and then every `interval_s` until cancelled."""
        try:
            while True:
                try:
                    await self.poll_all()
                except Exception:
                    log.exception("Node health round failed; retrying in %g s", self.interval_s)
                await asyncio.sleep(self.interval_s)
        finally:
            for task in list(self._pending):
                task.cancel()
