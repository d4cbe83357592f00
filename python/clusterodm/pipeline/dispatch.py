"""The proxy's task queue at run time: committed tasks wait here until a node has a free slot.

ClusterODM refuses a task over its token's `maxConcurrentTasks`, and sends every other task to the
best node at once, busy or not, where it may wait behind a long task while another node sits idle.
Here such a task waits in the store's `queued_tasks` table (durable, shared by the replicas), its
files on the disk of the replica that received them, and its output says where it stands.

Who does what, every `TICK_S` (and at once when something may have freed a slot):
- the leader (SQLite: the one process) reads the queue, polls the nodes for fresh slot counts
  while tasks wait, and assigns the head of the queue to the best node with a free slot
  (`cluster.queue.plan`, fair between tokens); with an autoscaler it asks for a machine for a task
  no node has room for, and assigns the task to that machine once it is up;
- every replica starts the forwards of its own tasks once assigned (only it has their files),
  refreshes their position lines, and fails those that waited past `--max-queue-hours`.
A slot stays counted while its task is assigned or being sent, and after that until a poll of
the node that started later shows the task there. Tasks of a replica that stopped and did not
come back within `OWNER_GONE_MS` are failed by the leader with the reason: their files are gone
with that replica's disk (replicas do not share a data folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clusterodm.cluster.clock import now_ms
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodes import NodeEvent
from clusterodm.cluster.queue import WAITING_PREFIX, plan, positions, waiting_line
from clusterodm.cluster.store import QueuedTask, StoreUnavailable
from clusterodm.config import env_number
from clusterodm.nodeodm.status import ACTIVE_STATUSES, TaskStatus, status_code
from clusterodm.pipeline.guards import active_tasks

if TYPE_CHECKING:
    from clusterodm.autoscale import Autoscaler
    from clusterodm.cluster.health import HealthPoller
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.replicas import Replica
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.store import Store
    from clusterodm.cluster.tasks import TaskTable
    from clusterodm.pipeline import Pipeline

log = logging.getLogger("clusterodm.queue")

TICK_S = env_number(os.environ, "CLUSTERODM_QUEUE_TICK_S", 0.5)
"""How often the queue is read (every replica) and dispatched (the leader)."""
NODE_POLL_S = env_number(os.environ, "CLUSTERODM_QUEUE_NODE_POLL_S", 1.0)
"""While tasks wait, the leader polls the nodes at most this often for fresh slot counts."""
CREATE_RETRY_S = 60.0
"""A task whose machine could not be created asks again after this long (it keeps waiting)."""
POLL_WAIT_S = 2.0
"""Longest a dispatch round waits for those polls (a slow node's poll ends in the background)."""
OWNER_GONE_MS = int(env_number(os.environ, "CLUSTERODM_QUEUE_OWNER_GONE_S", 60.0) * 1000)
"""Queued tasks of a replica not alive for this long are failed (their files were on its disk)."""


def owner_gone_message(replica_id: str) -> str:
    return (
        f"The clusterodm replica {replica_id} that held this task's files stopped while the task "
        "waited for a free node. Please create the task again."
    )


def expired_message(hours: float) -> str:
    return (
        f"This task waited {hours:g} hours for a free node (--max-queue-hours) and was given up. "
        "Please create it again when the cluster is less busy."
    )


class TaskQueue:
    """The queue as this replica sees it and acts on it (see the module docstring).

    The queue itself is in `store`; `pipeline` holds the tasks' files and sends them. `replica`
    says whether this replica leads, `poller` refreshes the nodes' slot counts, `autoscaler`
    (when set) creates machines for tasks no node has room for.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        enabled: bool,
        max_queue_hours: float,
        registry: NodeRegistry,
        routes: RouteIndex,
        tasks: TaskTable,
        store: Store,
        replica: Replica,
        poller: HealthPoller,
        autoscaler: Autoscaler | None,
    ) -> None:
        self._pipeline = pipeline
        self._enabled = enabled
        self._max_queue_hours = max_queue_hours
        self._registry = registry
        self._routes = routes
        self._tasks = tasks
        self._store = store
        self._replica = replica
        self._poller = poller
        self._autoscaler = autoscaler
        self._wake = asyncio.Event()
        self.rows: list[QueuedTask] = []
        """The queue as last read, in dispatch order."""
        self._assigned: dict[str, int] = {}
        """Leader: uuid -> node id of rows assigned a node, as last read."""
        self._handed: dict[str, tuple[int, int]] = {}
        """Leader: tasks whose row went (forward over): uuid -> (node id, when), counted against
        the node until a poll of it that started later."""
        self._polled_ms: dict[int, int] = {}
        """Leader: node id -> when its last poll by the queue started."""
        self._last_poll = 0.0
        self._gone_since: dict[str, int] = {}
        """Leader: replica id -> when it was first seen not alive while holding queued tasks."""
        self._creating: dict[str, asyncio.Task[None]] = {}
        """Leader: uuid -> the autoscaler creating a machine for it."""
        self._slow_polls: set[asyncio.Task[bool]] = set()
        self._counted: dict[str, float] = {}
        """uuid -> when: tasks handed over here, then seen in their node's count by a poll that
        started after the handover (the leader stops counting them itself)."""
        self._create_failed: dict[str, float] = {}
        """Leader: uuid -> when creating a machine for it last failed (tried again later)."""
        registry.on_change.append(self._node_changed)

    def _node_changed(self, event: NodeEvent, node: Node) -> None:
        if event in ("added", "unlocked", "online"):  # a machine coming up is added, then online
            self._last_poll = 0.0
            self.wake()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def wake(self) -> None:
        """Something may have freed a slot or changed the queue: run a round now."""
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Tasks waiting for a node (as last read), for the metrics and the commit decision."""
        return sum(1 for r in self.rows if r.waiting)

    def assigned_to(self, node: Node) -> int:
        """Queued tasks assigned to `node` whose forward has not ended (as last read)."""
        return sum(1 for r in self.rows if r.node_id == node.id)

    async def enqueue(self, uuid: str, owner: int, node_files: int, images: int, limit: int | None) -> None:
        row = await self._store.enqueue(uuid, owner, self._replica.id, node_files, images, limit, now_ms())
        self.rows = await self._store.load_queue()
        place = positions(self.rows).get(uuid)
        if place is not None:
            self._tasks.replace_line(uuid, WAITING_PREFIX, waiting_line(*place))
        log.info("Task %s waits for a free node (%d files, owner %d)", uuid, row.node_files, owner)
        self.wake()

    async def drop(self, uuid: str) -> bool:
        """Take a task out of the queue (cancel, remove); True if it was there."""
        gone = await self._store.dequeue([uuid])
        self.rows = [r for r in self.rows if r.uuid != uuid]
        creating = self._creating.pop(uuid, None)
        if creating is not None:
            creating.cancel()
        return bool(gone)

    def task_ended(self, node: Node) -> None:
        """A task on `node` ended (an info answer, a webhook...): look at the nodes now."""
        if self.enabled:
            self._last_poll = 0.0
            self.wake()

    def hold(self, node: Node, uuid: str) -> None:
        """A node just took a task: count it against the node's slots until a poll that started
        after now shows it there (a poll from before would still show the slot free)."""
        self._registry.begin_transit(node)

        async def poll_then_release() -> None:
            try:
                if await self._poller.poll(node):
                    self._counted[uuid] = time.monotonic()  # the leader need not count it any more
            finally:
                self._registry.end_transit(node)
                self.wake()

        self._pipeline.in_background(poll_then_release())

    def forward_ended(self, uuid: str) -> None:
        """A dispatched task's forward is over (handed to a node, or failed): its row goes."""

        async def dequeue() -> None:
            try:
                await self._store.dequeue([uuid])
            except Exception:
                log.exception("Cannot take task %s out of the queue", uuid)
            self.wake()

        self._pipeline.in_background(dequeue())

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Every replica: a round every `TICK_S` or when woken, until cancelled."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # said once per outage: the store's own errors say more
                if not failing:
                    log.warning("The task queue waits for the state store: %s", exc)
                failing = True
                await asyncio.sleep(TICK_S)
            except Exception:
                log.exception("Task queue round failed; trying again in %g s", TICK_S)
                failing = True
                await asyncio.sleep(TICK_S)
            else:
                if failing:
                    log.info("The task queue runs again")
                failing = False

    async def round(self) -> None:
        self.rows = await self._store.load_queue()
        if self._replica.leading:
            await self._lead()
        await self._own()

    # -- the owner's part: its own tasks ----------------------------------------------------------

    async def _own(self) -> None:
        me = self._replica.id
        places = positions(self.rows)
        max_wait_ms = self._max_queue_hours * 3_600_000
        now = now_ms()
        for row in self.rows:
            if row.replica_id != me:
                continue
            if row.started:  # being sent (or resumed after a restart): the row goes when that ends
                if not self._pipeline.owns(row.uuid):  # it ended, and the row stayed (a restart)
                    await self._store.dequeue([row.uuid])
                continue
            session = self._pipeline.sessions.get(row.uuid)
            if session is None:
                await self._fail(
                    row.uuid, "The uploaded files of this task are gone. Please create it again."
                )
                continue
            if row.node_id is not None:
                node = self._registry.get(row.node_id)
                if node is None or node.locked:
                    await self._store.unassign_queued(row.uuid)
                elif await self._store.start_queued(row.uuid, me):
                    waited_s = max(0, now - row.enqueued_ms) / 1000
                    await self._pipeline.dispatch_queued(session, node, waited_s)
                continue
            if max_wait_ms > 0 and now - row.enqueued_ms > max_wait_ms:
                await self._fail(row.uuid, expired_message(self._max_queue_hours))
                continue
            place = places.get(row.uuid)
            if place is not None:
                self._tasks.replace_line(row.uuid, WAITING_PREFIX, waiting_line(*place))

    async def _fail(self, uuid: str, message: str) -> None:
        """Fail a waiting task of this replica (if it is still in the queue), deleting its files."""
        if not await self._store.dequeue([uuid]):
            return
        log.warning("Task %s leaves the queue: %s", uuid, message)
        tasks = self._tasks
        task = tasks.get(uuid)
        if task is not None and task.info.get("status", {}).get("code") == TaskStatus.QUEUED:
            tasks.append_output(uuid, message)
            await tasks.set_status(uuid, TaskStatus.FAILED, message)
        await self._pipeline.drop(uuid)

    # -- the leader's part: who goes where -------------------------------------------------------

    async def _lead(self) -> None:
        now = now_ms()
        present = {r.uuid for r in self.rows}
        for uuid, node_id in self._assigned.items():
            if uuid not in present:
                self._handed[uuid] = (node_id, now)
        self._assigned = {r.uuid: r.node_id for r in self.rows if r.node_id is not None}
        alive = {v.id for v in self._replica.views() if v.alive} | {self._replica.id}
        await self._forget_dead_owners(alive, now)
        # A row whose task reached its node (a route) but was not deleted: its replica stopped
        # just after the handover. Its slot is the node's own count now.
        handed = [r.uuid for r in self.rows if r.started and r.uuid in self._routes]
        if handed:
            await self._store.dequeue(handed)
            self.rows = [r for r in self.rows if r.uuid not in handed]
        waiting = [r for r in self.rows if r.waiting and r.replica_id in alive]
        if not waiting:
            return
        await self._refresh_nodes()
        self._handed = {
            uuid: (node_id, gone)
            for uuid, (node_id, gone) in self._handed.items()
            if self._polled_ms.get(node_id, 0) <= gone
            and uuid not in self._counted
            and self._registry.get(node_id) is not None
        }
        forget = time.monotonic() - 60
        self._counted = {u: t for u, t in self._counted.items() if t > forget}
        taken: dict[int, int] = {}
        for node_id in [*self._assigned.values(), *(n for n, _ in self._handed.values())]:
            taken[node_id] = taken.get(node_id, 0) + 1
        free = {n.id: self._registry.free_slots(n) - taken.get(n.id, 0) for n in self._registry}
        assignments, unplaced = plan(
            waiting, lambda files: [n.id for n in self._registry.rank(files)], free, self._owner_room
        )
        for assignment in assignments:
            task, node_id = assignment.task, assignment.node_id
            if await self._store.assign_queued(task.uuid, node_id):
                self._assigned[task.uuid] = node_id
                node = self._registry.get(node_id)
                log.info("Task %s goes to node %s", task.uuid, node.name if node else node_id)
        if assignments:
            self.rows = await self._store.load_queue()
        self._autoscale(unplaced)

    def _owner_room(self, task: QueuedTask) -> int | None:
        """How many more tasks the task's owner may start (its maxConcurrentTasks at commit)."""
        if task.max_concurrent is None:
            return None
        active = active_tasks(self._routes, self._tasks, self._registry, task.owner_id)
        active |= {r.uuid for r in self.rows if r.owner_id == task.owner_id and r.node_id is not None}
        active |= {u for u in self._handed if u in self._tasks or u in self._routes}
        return task.max_concurrent - len(active)

    async def _refresh_nodes(self) -> None:
        """Poll the usable nodes (at most every `NODE_POLL_S`): a slot freed since the last
        regular poll is seen at once, and a task handed over shows in its node's count."""
        if time.monotonic() - self._last_poll < NODE_POLL_S:
            return
        self._last_poll = time.monotonic()
        now = self._registry.now()
        nodes = [n for n in self._registry if not n.locked and not n.auto_spawned and n.online(now)]
        if not nodes:
            return
        started = now_ms()
        polls = {asyncio.get_running_loop().create_task(self._poller.poll(n)): n for n in nodes}
        # A node slow to answer does not hold up the others' tasks: its poll ends in the background.
        done, slow = await asyncio.wait(polls, timeout=POLL_WAIT_S)
        for poll in done:
            self._polled_ms[polls[poll].id] = started
        self._slow_polls |= slow
        for poll in slow:
            poll.add_done_callback(self._slow_polls.discard)

    async def _forget_dead_owners(self, alive: set[str], now: int) -> None:
        """Fail the queued tasks of replicas gone for `OWNER_GONE_MS` (their files went with them)."""
        holders = {r.replica_id for r in self.rows}
        for replica_id in list(self._gone_since):
            if replica_id in alive or replica_id not in holders:
                del self._gone_since[replica_id]
        dead = []
        for replica_id in holders - alive:
            since = self._gone_since.setdefault(replica_id, now)
            if now - since >= OWNER_GONE_MS:
                dead.append(replica_id)
        if not dead:
            return
        rows = [r for r in self.rows if r.replica_id in dead]
        gone = set(await self._store.dequeue([r.uuid for r in rows]))
        if not gone:
            return
        by_uuid = {r.uuid: r for r in rows}
        records = [  # not those failed already (the upload hand-off's own cleanup, on PostgreSQL)
            t
            for t in await self._store.load_tasks()
            if t.uuid in gone and status_code(t.info) in ACTIVE_STATUSES
        ]
        for record in records:
            message = owner_gone_message(by_uuid[record.uuid].replica_id)
            record.info["status"] = {"code": int(TaskStatus.FAILED), "errorMessage": message}
            record.output.append(message)
            record.updated_ms = now
        await self._store.put_tasks(records)
        log.warning("Failed %d queued task(s) of stopped replica(s) %s", len(gone), ", ".join(dead))

    def _autoscale(self, unplaced: list[QueuedTask]) -> None:
        """Ask the autoscaler for a machine for tasks no node has room for (one per task, as the
        forwarder does without a queue); the task is assigned to the machine once it is up."""
        scaler = self._autoscaler
        if scaler is None:
            return
        retry_after = time.monotonic() - CREATE_RETRY_S
        self._create_failed = {u: t for u, t in self._create_failed.items() if t > retry_after}
        for task in unplaced:
            if task.uuid in self._creating or task.uuid in self._create_failed:
                continue
            if not scaler.can_create(task.node_files):
                continue
            job = asyncio.get_running_loop().create_task(self._create_for(task))
            self._creating[task.uuid] = job
            job.add_done_callback(self._created(task.uuid))

    def _created(self, uuid: str) -> Callable[[asyncio.Task[None]], None]:
        def done(job: asyncio.Task[None]) -> None:
            if self._creating.get(uuid) is job:
                del self._creating[uuid]

        return done

    async def _create_for(self, task: QueuedTask) -> None:
        scaler = self._autoscaler
        assert scaler is not None
        abort = asyncio.Event()

        def say(line: str) -> None:
            self._tasks.append_output(task.uuid, line)

        try:
            node = await scaler.create_node(task.node_files, say, abort)
        except asyncio.CancelledError:
            abort.set()
            raise
        except Exception as exc:
            log.warning("Task %s: creating a machine failed: %s (it keeps waiting)", task.uuid, exc)
            say(f"Cannot create a node: {exc}")
            self._create_failed[task.uuid] = time.monotonic()
            return
        if await self._store.assign_queued(task.uuid, node.id):
            self._assigned[task.uuid] = node.id
            self.wake()
        else:
            log.info("Machine %s was created for task %s, which no longer waits", node.name, task.uuid)
