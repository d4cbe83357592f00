"""What survives a node: final task state kept when a node goes away, live routes kept when pruning.

ClusterODM forgets every task of a removed node (its route goes with it) and prunes routes by age
alone. Here the last known info and output of each task move to the durable task table before a
node is removed, and a route untouched for 30 days is kept while its node still reports the task
as queued or running.
"""

from __future__ import annotations

import asyncio
import logging

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.store import TaskRecord
from clusterodm.cluster.tasks import TaskTable
from clusterodm.nodeodm.status import ACTIVE_STATUSES, TaskStatus, status_code

log = logging.getLogger("clusterodm.retention")

CHECK_CONCURRENCY = 16


async def keep_final_state(
    routes: RouteIndex, tasks: TaskTable, client: NodeClient, node: Node, reason: str
) -> int:
    """Copy the info and output of `node`'s tasks into the task table; returns how many were kept.

    Tasks the node still reports as queued or running will not finish anywhere we can see, so they
    are kept as FAILED with `reason`. A task the node cannot describe keeps an earlier local entry
    if there is one, else a FAILED entry saying why.
    """
    kept = 0
    for uuid in routes.for_node(node):
        route = routes.peek(uuid)
        owner = route.owner_id if route is not None else 0
        try:
            info = await client.task_info(node, uuid)
            output = [str(line) for line in await client.task_output(node, uuid)]
        except NodeError as e:
            if uuid in tasks:
                continue
            info = {"uuid": uuid, "processingTime": -1, "options": [], "imagesCount": 0}
            info["status"] = {"code": int(TaskStatus.FAILED)}
            output = [f"The last state of this task is unknown: {e}"]
        status = info.get("status")
        if isinstance(status, dict) and status.get("code") in ACTIVE_STATUSES:
            info["status"] = {"code": int(TaskStatus.FAILED), "errorMessage": reason}
            output.append(reason)
        await tasks.put(TaskRecord(uuid, owner, info, output))
        kept += 1
    if kept:
        log.info("Kept the final state of %d task(s) of node %s (%s)", kept, node.name, reason)
    return kept


async def live_routes(
    routes: RouteIndex, registry: NodeRegistry, client: NodeClient, uuids: list[str]
) -> set[str]:
    """The routes among `uuids` whose online node still reports the task as queued or running."""
    live: set[str] = set()
    gate = asyncio.Semaphore(CHECK_CONCURRENCY)
    now = registry.now()

    async def check(uuid: str) -> None:
        route = routes.peek(uuid)
        if route is None or not route.node.online(now):
            return
        async with gate:
            try:
                info = await client.task_info(route.node, uuid)
            except NodeError:
                return
        routes.observe_status(uuid, status_code(info))
        if status_code(info) in ACTIVE_STATUSES:
            live.add(uuid)

    await asyncio.gather(*(check(uuid) for uuid in uuids))
    return live
