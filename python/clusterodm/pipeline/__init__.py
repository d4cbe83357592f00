"""Task creation: uploads streamed to `tmp/{uuid}/`, admission checks, then a background forward to a node."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import shutil
import time
import uuid as uuid_lib
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from clusterodm.cluster.clock import now_ms
from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.providers import Limits
from clusterodm.cluster.queue import WAITING_PREFIX
from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable
from clusterodm.cluster.tasks import LocalTask
from clusterodm.nodeodm import messages
from clusterodm.nodeodm.limits import check_task_options
from clusterodm.nodeodm.names import is_valid_set_uuid
from clusterodm.nodeodm.options import OptionsError
from clusterodm.nodeodm.status import TaskStatus
from clusterodm.pipeline.attempt import Link, NodeAttempt
from clusterodm.pipeline.dispatch import TaskQueue
from clusterodm.pipeline.forwarder import Forwarder, node_fields
from clusterodm.pipeline.guards import (
    FLOODING,
    FloodMonitor,
    Refusal,
    concurrency_error,
    flood_key,
    max_concurrent_reached,
)
from clusterodm.pipeline.leftovers import Leftovers
from clusterodm.pipeline.sessions import Session, SessionStore
from clusterodm.pipeline.spare import SpareFiles
from clusterodm.pipeline.streaming import FileStream
from clusterodm.pipeline.taskoptions import split_merge
from clusterodm.pipeline.transfer import ForwardError, RateLimiter
from clusterodm.pipeline.tuning import Tuning

if TYPE_CHECKING:
    from clusterodm.autoscale import Autoscaler
    from clusterodm.cluster.health import HealthPoller
    from clusterodm.cluster.node import Node
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodeoptions import NodeOptionsCache
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.providers import Provider
    from clusterodm.cluster.replicas import Replica
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.slots import Slots
    from clusterodm.cluster.store import Store
    from clusterodm.cluster.tasks import TaskTable
    from clusterodm.cluster.uploads import UploadOwners
    from clusterodm.config import Config
    from clusterodm.metrics import Metrics

__all__ = ["Pipeline"]

log = logging.getLogger("clusterodm.pipeline")

LAUNCHING = "Launching... please wait! This can take a few minutes."
RESTART_LOST = (
    "clusterodm restarted while sending this task to a node and its uploaded files are gone. "
    "Please create the task again."
)
HARD_CAP_S = 48 * 3600
CLEANUP_INTERVAL_S = 30 * 60
MIN_CLEANUP_INTERVAL_S = 0.2
STOP_WAIT_S = 1.0
NO_NODE_ONLINE = (
    "No nodes available: none is online and unlocked right now. The upload is kept: commit it "
    "again in a minute."
)
SPLITMERGE_REFUSED = "Cannot use this node as a split-merge cluster."


def cleanup_interval(stale_s: float) -> float:
    """Every 30 min like the original, or a quarter of a shorter stale timeout (so it is honoured)."""
    if stale_s <= 0:
        return CLEANUP_INTERVAL_S
    return max(MIN_CLEANUP_INTERVAL_S, min(CLEANUP_INTERVAL_S, stale_s / 4))


class Pipeline:
    """Upload sessions and forwards in progress (architecture contract: owns/known/cancel/remove/...)."""

    def __init__(
        self,
        config: Config,
        *,
        registry: NodeRegistry,
        routes: RouteIndex,
        tasks: TaskTable,
        slots: Slots,
        store: Store,
        replica: Replica,
        poller: HealthPoller,
        node_client: NodeClient,
        node_options: NodeOptionsCache,
        provider: Provider,
        metrics: Metrics,
        autoscaler: Autoscaler | None,
        upload_owners: UploadOwners | None,
        tuning: Tuning | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._routes = routes
        self._tasks = tasks
        self._slots = slots
        self._store = store
        self._replica = replica
        self._node_options = node_options
        self._provider = provider
        self._metrics = metrics
        self._autoscaler = autoscaler
        tuning = tuning or Tuning.from_env(os.environ)
        self.sessions = SessionStore(config.tmp_dir, SpareFiles(config.data_dir / "spare"))
        self.owners = upload_owners
        """Where replicas sharing a store record who holds which session (None on SQLite)."""
        if self.owners is not None:
            self.sessions.on_drop = self.owners.release
        self.flood = FloodMonitor(config.flood_limit, tuning.flood_decay_s)
        self.limiter = RateLimiter(config.upload_max_speed)
        self._forwards: dict[str, asyncio.Task[None]] = {}
        self._early: dict[str, NodeAttempt] = {}
        """Attempts started while the client is still uploading, until commit hands them to a forward."""
        self._background: set[asyncio.Task[None]] = set()
        self.leftovers = Leftovers(node_client)
        link = Link(self.limiter, config.upload_concurrency, slots, tuning.stall, self.leftovers)
        self._forwarder = Forwarder(
            self.sessions,
            link,
            routes=routes,
            tasks=tasks,
            slots=slots,
            node_options=node_options,
            node_client=node_client,
            autoscaler=autoscaler,
            metrics=metrics,
            poll_interval=config.poll_interval,
        )
        self._early_forward = tuning.early_forward
        self._stream_through = tuning.early_forward and tuning.stream_through
        self.bytes_received = 0
        """Upload bytes received from clients since the start (the admin web's throughput chart)."""
        self.queue = TaskQueue(
            self,
            enabled=config.queue,
            max_queue_hours=config.max_queue_hours,
            registry=registry,
            routes=routes,
            tasks=tasks,
            store=store,
            replica=replica,
            poller=poller,
            autoscaler=autoscaler,
        )
        """Committed tasks waiting for a free node (unless `--no-queue`)."""
        if self.queue.enabled:
            self._forwarder.on_handed = self.queue.hold
            routes.on_task_ended = self.queue.task_ended
        self._from_queue: set[str] = set()
        """Forwards of tasks that waited in the queue (their row goes when the forward ends)."""
        self._queue_loop: asyncio.Task[None] | None = None

    # -- the contract ------------------------------------------------------------------------------

    def owns(self, uuid: str) -> bool:
        return uuid in self.sessions or uuid in self._forwards

    def opened_by_other(self, uuid: str, token: str) -> bool:
        session = self.sessions.get(uuid)
        return session is not None and not hmac.compare_digest(session.token.encode(), token.encode())

    # -- for the metrics -------------------------------------------------------------------------

    @property
    def forwards_in_flight(self) -> int:
        """Committed tasks being sent to a node right now."""
        return len(self._forwards)

    @property
    def forwarded_bytes(self) -> int:
        """Upload bytes sent to nodes since the start (every forward's bytes pass the limiter)."""
        return self.limiter.total

    @property
    def queued_tasks(self) -> int:
        """Tasks waiting in the proxy's queue (as last read)."""
        return self.queue.waiting

    def known(self, uuid: str) -> bool:
        return (
            self.owns(uuid)
            or uuid in self._tasks
            or uuid in self._routes
            or (self._config.tmp_dir / uuid).exists()
        )

    async def cancel(self, uuid: str) -> bool:
        stopped = await self._stop(uuid)
        if await self._tasks.set_status(uuid, TaskStatus.CANCELED):
            self._tasks.append_output(uuid, "Task canceled before it reached a node.")
            return True
        return stopped

    async def remove(self, uuid: str) -> bool:
        stopped = await self._stop(uuid)
        return await self._tasks.remove(uuid) or stopped

    async def _stop(self, uuid: str) -> bool:
        # Out of the queue first, so no replica starts it while its files go.
        queued = self._queued_here(uuid) and await self.queue.drop(uuid)
        self._from_queue.discard(uuid)
        job = self._forwards.pop(uuid, None)
        if job is not None:
            job.cancel()
            await asyncio.wait({job}, timeout=STOP_WAIT_S)
        had_session = self.sessions.get(uuid) is not None
        await self.drop(uuid)
        return job is not None or had_session or queued

    def _queued_here(self, uuid: str) -> bool:
        """A task waiting in the queue, or dispatched from it and still being sent, from here."""
        task = self._tasks.get(uuid)
        code = task.info.get("status", {}).get("code") if task is not None else None
        return code == TaskStatus.QUEUED or uuid in self._from_queue

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` on its own (kept referenced until it ends, cancelled at shutdown)."""
        self._in_background(job)

    async def drop(self, uuid: str) -> None:
        """Forget an upload session: stop its early forward (the node is asked to forget it), rm tmp."""
        early = self._early.pop(uuid, None)
        if early is not None:
            await early.abort()
        self.leftovers.forget(uuid)
        await self.sessions.drop(uuid)

    async def claim(self, uuid: str, token: str) -> str | None:
        """Record in the shared store that this replica holds the new session `uuid`; the error
        text if it cannot (another replica holds that uuid, or the store fails). A no-op on SQLite."""
        if self.owners is None:
            return None
        try:
            if await self.owners.claim(uuid, token):
                return None
        except StoreUnavailable:  # the store logs the outage once
            return UNAVAILABLE
        except Exception as exc:
            log.warning("Cannot record the upload session %s in the state store: %s", uuid, exc)
            return UNAVAILABLE
        return messages.invalid_set_uuid(uuid)

    def received(self, size: int) -> None:
        """`size` more bytes of an upload request arrived."""
        self.bytes_received += size

    # -- forwarding while uploading ------------------------------------------------------------------

    def file_stored(self, session: Session, name: str, limits: Limits, cluster_url: str) -> None:
        """A file is complete in tmp: feed it to the session's early forward, starting one at the first."""
        early = self._live_early(session, limits, cluster_url)
        if early is not None:
            early.add([name])

    def file_started(
        self, session: Session, partial: Path, name: str, limits: Limits, cluster_url: str
    ) -> FileStream | None:
        """A file is still arriving and already big (`streaming.STREAM_AFTER_BYTES`): with
        stream-through, pipe it to the early forward's node from now on (small files go in batches)."""
        if not self._stream_through or (session.directory / name).exists():
            return None  # a file of that name is stored: this one may be a repeat, or get another name
        early = self._live_early(session, limits, cluster_url)
        if early is None:
            return None
        source = FileStream(partial, name)
        if early.stream(source):
            return source
        source.close()
        return None

    def _live_early(self, session: Session, limits: Limits, cluster_url: str) -> NodeAttempt | None:
        """The session's early forward, a new one if there is none yet or it failed (a node error, or a
        stream the client broke off: the node is cleared before the new one starts, which re-sends
        the complete files from tmp)."""
        early = self._early.get(session.uuid)
        if early is not None and early.failed:
            log.info("Task %s: sending files while uploading failed: %s", session.uuid, early.failure)
            del self._early[session.uuid]
            self._in_background(early.abort())
            early = None
        return early or self._start_early(session, limits, cluster_url)

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_early(self, session: Session, limits: Limits, cluster_url: str) -> NodeAttempt | None:
        """Start the session's early forward (once per session), unless it cannot or must not have one.

        The early node is the ranking's choice now; commit re-checks everything (limits, options
        against that node, its image capacity) and falls back to a full forward if it does not fit.
        With an autoscaler and no free slot anywhere, nothing is sent before commit (a machine is
        only created for a committed task).
        """
        if not self._early_forward or session.early_left <= 0 or session.committed:
            return None
        if session.fields.get("zipurl") or session.fields.get("options") == "":
            return None  # zipurl tasks go in one request after commit; "" options fail at commit
        session.early_left -= 1
        registry = self._registry
        node = registry.best(max(1, session.node_files))
        if node is None or registry.free_slots(node) <= 0:
            return None  # no slot to claim now: the files go after commit
        if self.queue.enabled and (
            self.queue.waiting or self.queue.assigned_to(node) >= registry.free_slots(node)
        ):
            return None  # the task will wait in the queue: nothing is sent before its turn
        registry.took_turn(node)
        fields = dict(session.fields)

        async def prepare(node: Node) -> list[tuple[str, str]]:
            prepared = await self._prepare(node, session.token, limits, fields, cluster_url)
            if isinstance(prepared, Refusal):
                raise ForwardError(f"{node.name} refused the options: {prepared.message}")
            return node_fields({**fields, "options": orjson.dumps(prepared).decode()})

        early = self._forwarder.attempt(session, node, prepare)
        early.add(session.file_names())
        early.start()
        self._early[session.uuid] = early
        log.info("Task %s: sending files to node %s while the upload goes on", session.uuid, node.name)
        return early

    def _usable_early(self, session: Session, options: str | None) -> NodeAttempt | None:
        """The session's early forward if it can become the task's first attempt as is."""
        early = self._early.get(session.uuid)
        if early is None or early.failed or not early.node.online(self._registry.now()):
            return None  # a node gone offline meanwhile gets no commit: the task goes elsewhere or waits
        capacity = early.node.max_images
        if capacity is not None and capacity > 0 and session.node_files > capacity:
            return None
        sent = dict(early.fields).get("options")
        if options is not None and sent is not None and sent != options:
            return None
        return early

    # -- creation --------------------------------------------------------------------------------

    def assign_uuid(self, wanted: str | None) -> str | None:
        """The task's uuid: `set-uuid` if valid and unknown everywhere, a random v4 without it."""
        if not wanted:  # NodeODM ignores an empty `set-uuid:` header
            return str(uuid_lib.uuid4())
        if not is_valid_set_uuid(wanted) or self.known(wanted.lower()):
            return None
        return wanted.lower()

    async def admit(
        self,
        token: str,
        limits: Limits,
        fields: dict[str, Any],
        cluster_url: str,
        *,
        before_data: bool = True,
    ) -> str | None:
        """Init-time checks (spec 2.3): a node online, concurrency (or the queue's limits), the
        tmp quota (`before_data`: /task/new checks it before it stores the files), options, flooding."""
        # With the queue, a task may wait for its nodes to come back (e.g. right after a
        # database outage, when no replica polled them): their last known options are checked.
        reference = self._options_node() if self.queue.enabled else self._registry.reference_node()
        if reference is None:
            return "Cannot create task, no nodes are online."
        if self.queue.enabled:  # over its maxConcurrentTasks, a task waits in the queue instead
            error = await self.queue_limit_error(token)
        else:
            error = concurrency_error(
                self._routes, self._tasks, self._registry, token, limits.max_concurrent_tasks
            )
        error = error or (self.quota_error(0) if before_data else None)
        if error is not None:
            return error
        if fields.get("options") != "":  # like NodeODM, an empty value passes here and fails at commit
            prepared = await self._prepare(reference, token, limits, fields, cluster_url)
            if isinstance(prepared, Refusal):
                return prepared.message
        if self.flood.flooding(token):
            return FLOODING
        return None

    async def flood_start(self, token: str) -> bool:
        """Count an upload started by `token`; False (counting nothing) when the token floods.

        Replicas on a shared store count in the store, atomically, so the limit holds for the
        cluster, not per replica; one process counts in memory (`FloodMonitor`)."""
        store, flood = self._store, self.flood
        if not store.shared:
            if flood.flooding(token):
                return False
            flood.started(token)
            return True
        if flood.limit <= 0:
            return True
        interval_ms = int(flood.decay_interval_s * 1000)
        return await store.flood_start(flood_key(token), flood.limit, interval_ms, now_ms())

    async def flood_done(self, token: str) -> None:
        """An upload of `token` was committed: one fewer counts against its flood limit."""
        store, flood = self._store, self.flood
        if not store.shared:
            flood.committed(token)
        elif flood.limit > 0:
            await store.flood_done(flood_key(token), int(flood.decay_interval_s * 1000), now_ms())

    def _options_node(self) -> Node | None:
        """The node a waiting task's options are checked against: the first online one, else
        the first whose options are known from before it went offline."""
        registry, cache = self._registry, self._node_options
        return registry.reference_node() or next((n for n in registry if cache.last_known(n)), None)

    async def _prepare(
        self, node: Node, token: str, limits: Limits, fields: dict[str, Any], cluster_url: str
    ) -> list[dict[str, Any]] | Refusal:
        """The task's options checked against `node`'s, as they go to the node; or the refusal
        (a retry when the node's options cannot be read now)."""
        config = self._config
        node_options = None if node.online(self._registry.now()) else self._node_options.last_known(node)
        if node_options is None:
            try:
                node_options = await self._node_options.get(node)
            except NodeError as exc:
                return Refusal(
                    f"Cannot read the options of node {node.name}: {exc.reason}. Try again later.",
                    retry=True,
                )
        url = config.public_address or cluster_url
        checked = check_task_options(
            node_options,
            fields.get("options"),
            limits,
            adjust=lambda options: split_merge(options, config.splitmerge, url, token),
        )
        return Refusal(checked.message) if isinstance(checked, OptionsError) else checked

    async def launch(self, session: Session, limits: Limits, cluster_url: str) -> Refusal | None:
        """Commit-time checks, then the task table entry and the background forward; None, or why not.

        The caller has already marked the session committed (so a second commit is refused); on a
        refusal it drops the session (stopping any early forward), or keeps it for another commit
        when the refusal says the client may retry.
        """
        zipurl = session.fields.get("zipurl")
        if session.files == 0 and not zipurl:
            return Refusal("Not enough images (0 files uploaded)")
        if limits.max_images is not None and session.images > limits.max_images:
            return Refusal(messages.too_many_images(session.images, limits.max_images))
        if not self._config.splitmerge and "seed.zip" in session.file_names():
            return Refusal(SPLITMERGE_REFUSED)
        over_limit = concurrency_error(
            self._routes, self._tasks, self._registry, session.token, limits.max_concurrent_tasks
        )
        if over_limit is not None and not self.queue.enabled:
            return Refusal(over_limit)
        approval = await self._provider.approve_new_task(session.token, session.images)
        if approval is not None:
            return Refusal(approval)
        early = self._usable_early(session, None)
        autoscale = False
        wait = self.queue.enabled and await self._must_wait(session, early, over_limit is not None)
        if wait:
            early = None
            node: Node | None = None
            # It waits for any registered node that could take it, online or not (yet).
            nodes = list(self._registry)
            if not self._could_take(nodes, session.node_files) and not self._machine_possible(
                session.node_files
            ):
                return Refusal(self._no_node_reason(session.node_files, nodes))
        elif early is not None:
            node = early.node
        else:
            # Nodes are picked by what they will count (every file), not by clusterodm's image count;
            # the node's slot is claimed for the task now (cluster-wide), released if this fails.
            node = await self._slots.take(session.node_files, session.uuid)
            if node is None and self.queue.enabled:
                wait = True  # its last free slot went to another replica's forward meanwhile
            elif node is None:
                scaler = self._autoscaler
                autoscale = scaler is not None and scaler.can_create(session.node_files)
                if not autoscale:  # ClusterODM's way: the best node's own queue holds the task
                    node = await self._slots.overflow(session.node_files, session.uuid)
        try:
            refusal = await self._launch_on(session, early, node, autoscale, wait, limits, cluster_url)
        except BaseException:
            if early is None:
                await self._slots.release(session.uuid)
            raise
        if refusal is not None and early is None:
            await self._slots.release(session.uuid)
        return refusal

    async def _launch_on(
        self,
        session: Session,
        early: NodeAttempt | None,
        node: Node | None,
        autoscale: bool,
        wait: bool,
        limits: Limits,
        cluster_url: str,
    ) -> Refusal | None:
        """`launch` once its node is chosen (its slot claimed) or it must wait in the queue:
        options checked, the task-table entry and the forward or the queue; None, or why not."""
        check_node = self._options_node() if autoscale or wait else node
        if check_node is None:
            now = self._registry.now()
            usable = [n for n in self._registry if n.online(now) and not n.locked]
            if usable:  # online, but each too small for it (without the queue)
                return Refusal(self._no_node_reason(session.node_files, usable))
            return Refusal(NO_NODE_ONLINE, retry=True)
        prepared = await self._prepare(check_node, session.token, limits, session.fields, cluster_url)
        if isinstance(prepared, Refusal):
            return prepared
        # The store first: if it is unavailable (StoreUnavailable), the session is left as it was.
        owner = await self._routes.owner_id(session.token)
        created = session.fields.get("dateCreated")
        info = {
            "uuid": session.uuid,
            "name": session.fields.get("name")
            or f"Task of {time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime())}",
            "dateCreated": created if isinstance(created, int) else int(time.time() * 1000),
            "processingTime": 0,
            "status": {"code": int(TaskStatus.QUEUED if wait else TaskStatus.RUNNING)},
            "options": prepared,
            "imagesCount": session.images,
            "progress": 0,
        }
        task = LocalTask(session.uuid, owner, info, [] if wait else [LAUNCHING])
        limit = limits.max_concurrent_tasks
        if not wait and limit is not None:
            await self._routes.activity.flush()  # this replica's news of ended tasks count at once
        if wait or limit is None:
            await self._tasks.put(task)
        elif not await self._tasks.admit(task, limit, self._down_nodes()):
            # At its limit by tasks this replica did not know of (other replicas' forwards).
            if not self.queue.enabled:
                return Refusal(max_concurrent_reached(limit))
            wait, early, node = True, None, None  # it waits in the queue instead
            await self._slots.release(session.uuid)
            task.info["status"] = {"code": int(TaskStatus.QUEUED)}
            task.output = []
            await self._tasks.put(task)
        session.fields["options"] = orjson.dumps(prepared).decode()
        if early is not None and self._usable_early(session, session.fields["options"]) is None:
            # It failed meanwhile, or its node's options changed under it: start over with the
            # checked ones on a node chosen (and its slot claimed) by the forward.
            early, node = None, None
        stale = self._early.pop(session.uuid, None)
        if stale is not None and stale is not early:
            await stale.abort()
        session.committed = True
        self.sessions.save(session)
        await self.flood_done(session.token)
        if wait:
            await self.queue.enqueue(session.uuid, owner, session.node_files, session.images, limit)
            return None
        self._spawn(session, None if autoscale else node, early)
        return None

    def _down_nodes(self) -> list[int]:
        """Nodes found down (offline, last poll failed): their tasks do not count against a
        token's maxConcurrentTasks (`guards.active_tasks`: a dead node should not block a user)."""
        registry = self._registry
        now = registry.now()
        return [n.id for n in registry if n.last_error is not None and not n.online(now)]

    async def _must_wait(self, session: Session, early: NodeAttempt | None, over_limit: bool) -> bool:
        """Whether a committed task joins the queue: its owner is at maxConcurrentTasks, others
        wait already (no overtaking), or no node has a free slot for it right now."""
        if over_limit:
            return True
        self.queue.rows = await self._store.load_queue()
        if self.queue.waiting:
            return True
        registry = self._registry
        if early is not None:
            return not self._fits(early.node)
        best = registry.best(session.node_files)
        return best is None or registry.free_slots(best) - self.queue.assigned_to(best) <= 0

    def _fits(self, node: Node) -> bool:
        """A node running this task's early forward still has room once that forward is counted."""
        _, max_parallel, task_queue_count = node.board_values()
        in_transit = self._registry.in_transit(node)
        return max_parallel - task_queue_count - in_transit - self.queue.assigned_to(node) >= 0

    def _machine_possible(self, node_files: int) -> bool:
        """The autoscaler could ever create a machine big enough for this task."""
        scaler = self._autoscaler
        return scaler is not None and scaler.settings.size_for(node_files) is not None

    async def dispatch_queued(self, session: Session, node: Node, waited_s: float) -> None:
        """The leader gave this queued task (files here) a node: send it there now."""
        tasks = self._tasks
        tasks.replace_line(session.uuid, WAITING_PREFIX, LAUNCHING)
        tasks.append_output(
            session.uuid, f"Waited {waited_s:.0f} s in the queue; sending the task to node {node.name}"
        )
        await tasks.set_status(session.uuid, TaskStatus.RUNNING)
        self._metrics.queue_wait.labels("proxy").observe(waited_s)
        self._from_queue.add(session.uuid)
        # The leader's choice: the slot is this task's (counted cluster-wide while it is sent).
        await self._slots.claim(node, session.uuid, force=True)
        self._spawn(session, node)

    async def queue_limit_error(self, token: str) -> str | None:
        """`--max-queued-tasks` (per token) and `--max-queued-tasks-total`, checked at init."""
        config = self._config
        per_token, total = config.max_queued_tasks, config.max_queued_tasks_total
        if not per_token and not total:
            return None
        rows = await self._store.load_queue()
        self.queue.rows = rows
        if total and len(rows) >= total:
            return (
                f"The cluster's task queue is full ({len(rows)} tasks wait, the limit is {total}). "
                "Try again when some have started."
            )
        owner = self._routes.known_owner_id(token)
        mine = sum(1 for r in rows if r.owner_id == owner) if owner is not None else 0
        if per_token and mine >= per_token:
            return (
                f"You have {mine} tasks waiting in the queue, the most one token may have "
                f"(--max-queued-tasks {per_token}). Try again when some have started, or cancel some."
            )
        return None

    def quota_error(self, incoming: int) -> str | None:
        """`--tmp-quota`: refuse a new task once the quota is used up (`incoming` 0), or an upload
        request of `incoming` bytes that would pass it."""
        quota = self._config.tmp_quota
        if not quota:
            return None
        used = self.sessions.bytes_used()
        if incoming == 0 and used < quota:
            return None
        if incoming and used + incoming <= quota:
            return None
        what = "Refused" if incoming == 0 else f"This upload of {incoming} bytes is refused"
        return (
            f"{what}: uploads and queued tasks use {used} of the {quota} bytes of disk this cluster "
            "allows them (--tmp-quota). Try again when queued tasks have started, or upload less at once."
        )

    @staticmethod
    def _could_take(nodes: list[Node], node_files: int) -> bool:
        """One of `nodes` takes a task of this many files, as far as its last known limit says."""
        limits = [n.max_images for n in nodes]
        return any(limit is None or limit <= 0 or limit >= node_files for limit in limits)

    def _no_node_reason(self, node_files: int, nodes: list[Node]) -> str:
        """ "No nodes available", and why when `nodes` (the candidates) exist but their image
        limits are too low."""
        if not nodes or self._could_take(nodes, node_files):
            return "No nodes available"
        return (
            f"No nodes available: this task has {node_files} files and a node counts every file "
            f"against its image limit (GCP .txt and .zip files too), but the largest limit among the "
            f"nodes is {max(n.max_images or 0 for n in nodes)}."
        )

    def _spawn(self, session: Session, first: Node | None, early: NodeAttempt | None = None) -> None:
        job = asyncio.get_running_loop().create_task(self._forwarder.run(session, first, early))
        self._forwards[session.uuid] = job
        job.add_done_callback(lambda done: self._forward_done(session.uuid, done))

    def _forward_done(self, uuid: str, job: asyncio.Task[None]) -> None:
        if self._forwards.get(uuid) is job:
            del self._forwards[uuid]
        if (
            uuid in self._from_queue and not job.cancelled()
        ):  # cancelled: by a user (who dequeues), or a shutdown
            self._from_queue.discard(uuid)
            self.queue.forward_ended(uuid)
        if not job.cancelled() and job.exception() is not None:
            exc = job.exception()
            log.error("Forward of %s crashed: %r", uuid, exc, exc_info=exc)
            message = f"Internal error while forwarding: {exc}"

            async def fail() -> None:
                await self._tasks.set_status(uuid, TaskStatus.FAILED, message)
                await self.sessions.drop(uuid)

            asyncio.get_running_loop().create_task(fail())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume or fail forwards interrupted by a restart, then clean stale uploads periodically."""
        await asyncio.to_thread(self.sessions.load)
        if self.owners is not None:  # this replica's id is new: its sessions are held under it now
            try:
                await self.owners.adopt((s.uuid, s.token) for s in self.sessions)
            except Exception as exc:  # they still work through this replica; others cannot find them
                log.warning("Cannot record this replica's upload sessions in the state store: %s", exc)
        rows = {r.uuid: r for r in await self._store.load_queue()}
        held: list[str] = []
        for session in self.sessions:
            if not session.committed:
                continue
            task = self._tasks.get(session.uuid)
            status = task.info.get("status", {}).get("code") if task is not None else None
            if status == TaskStatus.QUEUED and task is not None:
                held.append(session.uuid)
                if session.uuid not in rows:  # committed, but the process stopped before it was queued
                    limits = None
                    await self.queue.enqueue(
                        session.uuid, task.owner_id, session.node_files, session.images, limits
                    )
                continue
            if session.uuid in rows:
                held.append(session.uuid)
                self._from_queue.add(session.uuid)
            if status == TaskStatus.RUNNING:
                log.info("Resuming the forward of task %s after a restart", session.uuid)
                # What the run before sent of it to which node is unknown: clear a node before using it.
                self.leftovers.suspect(session.uuid)
                self._tasks.append_output(session.uuid, "clusterodm restarted; sending the task again")
                self._spawn(session, None)
            else:
                await self.sessions.drop(session.uuid)
        if held:
            await self._store.adopt_queued(held, self._replica.id)
        if self.queue.enabled or rows:  # with --no-queue, only to empty a queue left by an earlier run
            self._queue_loop = asyncio.get_running_loop().create_task(self.queue.run())
        for task in self._tasks.entries():
            code = task.info.get("status", {}).get("code")
            stuck = code == TaskStatus.RUNNING and task.output[:1] == [LAUNCHING]
            if stuck and task.uuid not in self._forwards:
                self._tasks.append_output(task.uuid, RESTART_LOST)
                await self._tasks.set_status(task.uuid, TaskStatus.FAILED, RESTART_LOST)
        interval = cleanup_interval(self._config.stale_uploads_timeout * 3600)
        while True:
            await self.cleanup()
            await asyncio.sleep(interval)

    async def cleanup(self, now: float | None = None) -> None:
        """Drop abandoned uploads: idle past `--stale-uploads-timeout`, or older than 48 h, and orphans.

        `now` (wall clock, s) is injectable so the 48 h cap can be tested without waiting.
        """
        stale_s = self._config.stale_uploads_timeout * 3600
        now = time.time() if now is None else now
        for session in self.sessions:
            if session.uuid in self._forwards or session.active or self._queued_here(session.uuid):
                continue  # queued tasks leave by --max-queue-hours, never as abandoned uploads
            too_old = now - session.created_ms / 1000 > HARD_CAP_S
            idle = not session.committed and stale_s > 0 and now - session.touched > stale_s
            if too_old or idle:
                why = "older than 48 h" if too_old else f"no upload for {stale_s / 3600:g} h"
                log.info("Removing abandoned upload %s (%d files, %s)", session.uuid, session.files, why)
                await self.drop(session.uuid)
        for path in self.sessions.orphans():
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            if age > max(3600.0, min(stale_s, HARD_CAP_S) if stale_s else HARD_CAP_S):
                await asyncio.to_thread(shutil.rmtree, path, True)

    async def close(self) -> None:
        """Stop forwards (they resume at the next start: their folders and entries stay)."""
        if self._queue_loop is not None:
            self._queue_loop.cancel()
            await asyncio.wait({self._queue_loop}, timeout=STOP_WAIT_S)
        for early in list(self._early.values()):
            await early.abort()
        self._early.clear()
        for task in list(self._background):
            task.cancel()
        jobs = list(self._forwards.values())
        self._forwards.clear()
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs, timeout=STOP_WAIT_S)
