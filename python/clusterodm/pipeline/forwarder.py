"""The background job that hands one committed task to a node, switching nodes on failure.

The first attempt is usually the one started while the client was still uploading (`early`): only
its tail is left. Any later attempt starts over on another node, re-sending everything from tmp.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.providers import NO_LIMITS
from clusterodm.cluster.store import StoreUnavailable
from clusterodm.nodeodm.limits import check_task_options
from clusterodm.nodeodm.options import OptionsError
from clusterodm.nodeodm.status import TaskStatus
from clusterodm.pipeline.attempt import Link, NodeAttempt, Prepare
from clusterodm.pipeline.leftovers import DISCARD_NAME
from clusterodm.pipeline.sessions import Session, SessionStore
from clusterodm.pipeline.transfer import ForwardError

if TYPE_CHECKING:
    from clusterodm.autoscale import Autoscaler
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodeoptions import NodeOptionsCache
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.slots import Slots
    from clusterodm.cluster.tasks import TaskTable
    from clusterodm.metrics import Metrics

log = logging.getLogger("clusterodm.pipeline")

ATTEMPTS = 5
RETRY_DELAY_S = 1.0
NODE_WAIT_S = 30.0
STORE_RETRY_S = 1.0
"""How often a handed-over task's route is tried again while the state store is unavailable."""


def failed_message(attempts: int, reason: str) -> str:
    return f"Failed to forward task to processing node after {attempts} attempts ({reason}). Try again later."


def node_fields(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Init fields in NodeODM's dialect: ClusterODM always sends name and dateCreated (spec 2.9)."""
    out = [("name", str(fields.get("name") or "")), ("options", str(fields.get("options") or "[]"))]
    out.append(("dateCreated", str(fields.get("dateCreated") or int(time.time() * 1000))))
    if fields.get("skipPostProcessing"):
        out.append(("skipPostProcessing", "true"))
    for key in ("webhook", "outputs"):
        if fields.get(key):
            out.append((key, str(fields[key])))
    return out


class Forwarder:
    """Runs forwards; `Pipeline` owns the asyncio tasks and cancels them.

    A forward takes a node's slot from `slots` (or a machine from `autoscaler`), checks the task's
    options against the node's (`node_options`), then leaves a route in `routes` and the task's
    entry in `tasks` goes; `node_client` reads the node's answer when a commit's reply was lost.
    """

    def __init__(
        self,
        sessions: SessionStore,
        link: Link,
        *,
        routes: RouteIndex,
        tasks: TaskTable,
        slots: Slots,
        node_options: NodeOptionsCache,
        node_client: NodeClient,
        autoscaler: Autoscaler | None,
        metrics: Metrics,
        poll_interval: float,
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self._slots = slots
        self._node_options = node_options
        self._node_client = node_client
        self._autoscaler = autoscaler
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._sessions = sessions
        self.link = link
        self.on_handed: Callable[[Node, str], None] | None = None
        """Told of each task a node took (the proxy queue counts it until the node's next poll)."""

    def say(self, uuid: str) -> Callable[[str], None]:
        tasks = self._tasks

        def say(line: str) -> None:
            tasks.append_output(uuid, line)

        return say

    async def pick(
        self, uuid: str, node_files: int, avoid: set[int], *, overflow: bool = True
    ) -> Node | None:
        """A node with a free slot (claimed for `uuid`) for a task of `node_files` files as nodes
        count them (`Session.node_files`), preferring those this forward has not failed on; with
        `overflow`, when no node has a free slot, ClusterODM's choice (the best node queues it)."""
        slots = self._slots
        node = await slots.take(node_files, uuid, avoid)
        if node is None and overflow:
            node = await slots.overflow(node_files, uuid, avoid)
        return node

    def validated(self, fields: dict[str, Any]) -> Prepare:
        """Init fields for a node: the task's prepared options, checked against that node's list."""

        async def prepare(node: Node) -> list[tuple[str, str]]:
            try:
                node_options = await self._node_options.get(node)
            except NodeError as exc:
                raise ForwardError(f"{node.name}: cannot read its options ({exc.reason})") from None
            # Already limited and adjusted at commit: only this node's own list is left to check.
            checked = check_task_options(node_options, fields.get("options") or "[]", NO_LIMITS)
            if isinstance(checked, OptionsError):
                raise ForwardError(f"{node.name} refused the options: {checked.message}")
            return node_fields({**fields, "options": orjson.dumps(checked).decode()})

        return prepare

    def attempt(self, session: Session, node: Node, prepare: Prepare) -> NodeAttempt:
        """A new attempt for `session` on `node` (not started, no files yet)."""
        zipurl = session.fields.get("zipurl") or None
        return NodeAttempt(
            node, session.uuid, session.directory, prepare, self.link, self.say(session.uuid), zipurl=zipurl
        )

    async def _wait_for_node(
        self, uuid: str, node_files: int, avoid: set[int], say: Callable[[str], None], abort: asyncio.Event
    ) -> Node | None:
        """A node (its slot claimed for `uuid`), possibly a new autoscaled one; waits a little for
        nodes to come online after a start."""
        started = time.monotonic()
        deadline = started + NODE_WAIT_S
        wait = self._metrics.forward_wait
        while True:
            scaler = self._autoscaler
            can_scale = scaler is not None and scaler.can_create(node_files)
            node = await self.pick(uuid, node_files, avoid, overflow=not can_scale)
            if node is None and scaler is not None and can_scale:
                created = await scaler.create_node(node_files, say, abort)
                # A machine made for this task: its slot is the task's, polled or not yet.
                await self._slots.claim(created, uuid, force=True)
                wait.observe(time.monotonic() - started)
                return created
            if node is not None or time.monotonic() > deadline:
                wait.observe(time.monotonic() - started)
                return node
            await asyncio.sleep(min(1.0, self._poll_interval))

    async def run(self, session: Session, first: Node | None, early: NodeAttempt | None = None) -> None:
        """Forward `session` to a node (up to ATTEMPTS); the task ends routed or FAILED, tmp removed."""
        routed = False
        try:
            routed = await self._run(session, first, early)
        finally:
            if not routed:  # failed, cancelled or crashed: a slot chosen for it is free again
                await asyncio.shield(self._release(session.uuid))

    async def _release(self, uuid: str) -> None:
        try:
            await self._slots.release(uuid)
        except Exception as exc:
            log.warning("Task %s: cannot free its node slot claim: %s", uuid, exc)

    async def _run(self, session: Session, first: Node | None, early: NodeAttempt | None) -> bool:
        uuid = session.uuid
        say = self.say(uuid)
        avoid: set[int] = set()
        reason = "no nodes available"
        abort = asyncio.Event()
        metrics = self._metrics
        for number in range(1, ATTEMPTS + 1):
            if number > 1:
                metrics.forward_retries.inc()
                await asyncio.sleep(RETRY_DELAY_S * (number - 1))
            current = early if number == 1 else None
            if current is None:
                node = first if number == 1 else None
                try:
                    node = node or await self._wait_for_node(uuid, session.node_files, avoid, say, abort)
                except Exception as exc:  # the autoscaler's AutoscaleError and friends
                    reason = f"autoscaling failed: {exc}"
                    say(f"Cannot create a node: {exc}")
                    continue
                if node is None:
                    reason = "no nodes available"
                    continue
                if await self._already_there(node, uuid):
                    await self._slots.placed(uuid)
                    break
                current = self.attempt(session, node, self.validated(session.fields))
                say(f"Sending {len(session.file_names())} files to node {node.name} (attempt {number})")
                current.add(session.file_names())
                current.start()
            node = current.node
            try:
                await current.finish()
            except (ForwardError, NodeError) as exc:
                reason = str(exc)
                avoid.add(node.id)
                await current.abort()
                log.warning("Forward of %s to %s failed (attempt %d): %s", uuid, node.name, number, exc)
                say(f"Attempt {number} to send the task to node {node.name} failed: {exc}")
                continue
            except asyncio.CancelledError:
                # Cancelled by the user (or shutdown): stop the uploads, do not leave a task on the node.
                await current.abort()
                raise
            say(f"Task handed to node {node.name}")
            break
        else:
            message = failed_message(ATTEMPTS, reason)
            log.error("Task %s: %s", uuid, message)
            metrics.forwards_failed.inc()
            self._tasks.append_output(uuid, message)
            await self._tasks.set_status(uuid, TaskStatus.FAILED, message)
            self.link.leftovers.forget(uuid)
            await self._sessions.drop(uuid)
            return False
        metrics.forwards_completed.inc()
        if self.on_handed is not None:
            self.on_handed(node, uuid)
        routes, tasks = self._routes, self._tasks
        await self._until_stored(uuid, node, lambda: routes.add(uuid, node, session.token))
        routes.observe_status(uuid, TaskStatus.QUEUED)  # counts for maxConcurrentTasks
        # Stored active before the local entry goes, so other replicas never miss the task when
        # they count the token's tasks in the store (`Store.admit_task`).
        await self._until_stored(uuid, node, routes.activity.flush)
        await self._until_stored(uuid, node, lambda: tasks.remove(uuid))
        self.link.leftovers.forget(uuid)
        await self._sessions.drop(uuid)
        log.info("Task %s handed to node %s", uuid, node.name)
        return True

    async def _until_stored(self, uuid: str, node: Node, write: Callable[[], Awaitable[object]]) -> None:
        """Write the handed-over task's state, waiting out a store outage: the task runs on its node
        now, and the upload session (kept meanwhile) lets a restart resume from here."""
        warned = False
        while True:
            try:
                await write()
                return
            except StoreUnavailable:
                if not warned:
                    log.warning(
                        "Task %s runs on node %s; its route is written once the state store answers again",
                        uuid,
                        node.name,
                    )
                    warned = True
                await asyncio.sleep(STORE_RETRY_S)

    async def _already_there(self, node: Node, uuid: str) -> bool:
        """After a restart the node may already have the task (crash before the route was stored)."""
        try:
            info = await self._node_client.task_info(node, uuid)
        except NodeError:
            return False
        return info.get("name") != DISCARD_NAME  # leftovers being cleared are not the task
