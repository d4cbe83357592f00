"""Task actions shared by the proxy routes and the admin CLI/web.

Each action finds the task where it lives: in the task pipeline (still uploading or being
forwarded), on a node (route table), or only in the local task table (spec 2.4/2.5). Results
use NodeODM's shapes and errors are `{"error": ...}` dicts, never exceptions, except `NodeGone`
when the caller asked for it (the proxy drops the client connection then, as ClusterODM does).

`token` is the caller's token; `None` means the admin (no ownership check). Ownership is
enforced when tokens are in use (`--token`, `--limits` or a non-local provider): another token's task is
answered exactly like an unknown one (spec 8.20).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import orjson

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodeoptions import NodeOptionsCache
from clusterodm.cluster.providers import NO_LIMITS, Limits, Provider
from clusterodm.cluster.routing import NO_OWNER, RouteIndex
from clusterodm.cluster.tasks import TaskTable
from clusterodm.nodeodm.limits import check_task_options
from clusterodm.nodeodm.options import OptionsError
from clusterodm.nodeodm.status import TaskStatus, status_code

log = logging.getLogger("clusterodm.actions")

NODE_TIMEOUT_S = 10.0


class NodeGone(Exception):
    """The node refused or reset the connection (only raised with `drop_if_gone=True`)."""


def no_task_entry(uuid: str, action: str) -> str:
    return f"Invalid route for taskId {uuid}:{action}, no task table entry."


def no_valid_route(uuid: str, action: str) -> str:
    return f"Invalid route for taskId {uuid}:{action}, no valid route possible."


def no_route(uuid: str) -> str:
    return f"Invalid route for taskId {uuid}, no nodes in routing table."


NOT_SUPPORTED = "Action not supported. Please create a new task."


class Uploads(Protocol):
    """Tasks not on a node yet (uploading, or being forwarded): the task pipeline."""

    def owns(self, uuid: str) -> bool: ...
    def opened_by_other(self, uuid: str, token: str) -> bool:
        """Whether `uuid` is an upload session opened with a token other than `token`."""
        ...

    async def cancel(self, uuid: str) -> bool: ...
    async def remove(self, uuid: str) -> bool: ...


class CancelListener(Protocol):
    """Told of every cancel/remove (the autoscaler destroys a machine running that task)."""

    async def on_task_cancelled(self, uuid: str) -> None: ...


class TaskActions:
    """Task reads and writes over the objects they touch."""

    def __init__(
        self,
        *,
        routes: RouteIndex,
        tasks: TaskTable,
        uploads: Uploads,
        node_client: NodeClient,
        node_options: NodeOptionsCache,
        http: httpx.AsyncClient,
        provider: Provider,
        enforce_owner: bool,
        cancel_listener: Callable[[], CancelListener | None] = lambda: None,
    ) -> None:
        self._routes = routes
        self._tasks = tasks
        self._uploads = uploads
        self._node_client = node_client
        self._node_options = node_options
        self._http = http
        self._provider = provider
        self.enforce_owner = enforce_owner
        """Whether tasks are private to the token that created them (`--token`, `--limits` or a
        non-local provider)."""
        self._cancel_listener = cancel_listener
        """The listener of the moment (the autoscaler can be attached after the start)."""
        self.shared = routes.shared
        """Routes live in a store other replicas share: a table miss must ask it (`find_node`)."""

    # -- lookups ---------------------------------------------------------------------------------

    def node_for(self, uuid: str, token: str | None) -> Node | None:
        """The node serving `uuid` for this caller (refreshes the route's access time)."""
        enforce = token is not None and self.enforce_owner
        return self._routes.lookup(uuid, token, enforce_owner=enforce)

    async def find_node(self, uuid: str, token: str | None) -> Node | None:
        """`node_for`, asking the shared store (other replicas' routes) when the table misses."""
        node = self.node_for(uuid, token)
        if node is None and self._routes.shared:
            enforce = token is not None and self.enforce_owner
            node = await self._routes.fetch(uuid, token, enforce_owner=enforce)
        return node

    def owner_filter(self, token: str | None) -> int | None:
        """Owner id local-task reads must match, or None for no check."""
        if token is None or not self.enforce_owner:
            return None
        owner = self._routes.known_owner_id(token)
        return NO_OWNER if owner is None else owner

    def local_info(
        self, uuid: str, token: str | None, with_output: str | None = None
    ) -> dict[str, Any] | None:
        return self._tasks.info_view(uuid, with_output, owner_id=self.owner_filter(token))

    def local_output(self, uuid: str, token: str | None, line: str | None = None) -> list[str] | None:
        return self._tasks.output_view(uuid, line, owner_id=self.owner_filter(token))

    async def stored_info(
        self, uuid: str, token: str | None, with_output: str | None = None
    ) -> dict[str, Any] | None:
        """`local_info`, else another replica's entry in the shared store (its forward in progress,
        or the final info of a task whose node is gone)."""
        view = self.local_info(uuid, token, with_output)
        if view is None and self.shared:
            view = await self._tasks.remote_info(uuid, with_output, owner_id=self.owner_filter(token))
        return view

    async def stored_output(self, uuid: str, token: str | None, line: str | None = None) -> list[str] | None:
        """`local_output`, else another replica's entry (see `stored_info`)."""
        lines = self.local_output(uuid, token, line)
        if lines is None and self.shared:
            lines = await self._tasks.remote_output(uuid, line, owner_id=self.owner_filter(token))
        return lines

    def has_local(self, uuid: str, token: str | None) -> bool:
        return self._tasks.get(uuid, self.owner_filter(token)) is not None

    # -- reads -----------------------------------------------------------------------------------

    async def info(self, uuid: str, token: str | None, with_output: str | None = None) -> dict[str, Any]:
        node = await self.find_node(uuid, token)
        if node is not None:
            try:
                info = await self._node_client.task_info(node, uuid, with_output)
            except NodeError as exc:
                return {"error": exc.reason}
            self._routes.observe_status(uuid, status_code(info))
            return info
        view = await self.stored_info(uuid, token, with_output)
        return view if view is not None else {"error": no_task_entry(uuid, "info")}

    async def output(
        self, uuid: str, token: str | None, line: str | None = None
    ) -> list[str] | dict[str, Any]:
        node = await self.find_node(uuid, token)
        if node is not None:
            try:
                return [str(x) for x in await self._node_client.task_output(node, uuid, line)]
            except NodeError as exc:
                return {"error": exc.reason}
        lines = await self.stored_output(uuid, token, line)
        return lines if lines is not None else {"error": no_task_entry(uuid, "output")}

    async def list(self, token: str | None) -> list[dict[str, Any]]:
        """Tasks of `token` (all tasks for the admin): local entries plus routed tasks their node lists.

        Routed tasks are checked with one `/task/list` per node (not one request per task as
        ClusterODM does); tasks of a node that does not answer are left out, as ClusterODM does.
        """
        if token is None:
            local = [t.uuid for t in self._tasks.entries()]
            routed = [(r.uuid, r.node) for r in self._routes.entries()]
        else:
            owner = self._routes.known_owner_id(token)
            local = [] if owner is None else self._tasks.for_owner(owner)
            routed = []
            for uuid in self._routes.for_owner(token):
                route = self._routes.peek(uuid)
                if route is not None:
                    routed.append((uuid, route.node))
        by_node: dict[int, tuple[Node, list[str]]] = {}
        for uuid, node in routed:
            by_node.setdefault(node.id, (node, []))[1].append(uuid)
        listed = await asyncio.gather(*(self._node_task_ids(node) for node, _ in by_node.values()))
        seen: dict[str, None] = dict.fromkeys(local)
        for (_, uuids), known in zip(by_node.values(), listed, strict=True):
            if known is None:
                continue
            for uuid in uuids:
                if uuid in known:
                    seen[uuid] = None
                else:
                    self._routes.activity.ended(uuid)  # the node no longer has it: it runs nowhere
        return [{"uuid": u} for u in seen]

    async def _node_task_ids(self, node: Node) -> set[str] | None:
        """The uuids `node` lists, or None when it does not answer."""
        try:
            entries = await self._node_client.task_list(node)
        except NodeError as exc:
            log.warning("Task list: %s (its tasks are left out)", exc)
            return None
        return {e["uuid"] for e in entries if isinstance(e, dict) and isinstance(e.get("uuid"), str)}

    # -- writes ----------------------------------------------------------------------------------

    async def cancel(self, uuid: str, token: str | None, *, drop_if_gone: bool = False) -> dict[str, Any]:
        return await self._stop("cancel", uuid, token, drop_if_gone)

    async def remove(self, uuid: str, token: str | None, *, drop_if_gone: bool = False) -> dict[str, Any]:
        return await self._stop("remove", uuid, token, drop_if_gone)

    async def _stop(self, action: str, uuid: str, token: str | None, drop_if_gone: bool) -> dict[str, Any]:
        owner = self.owner_filter(token)
        # Another owner's task or upload session is answered like an unknown one, as the upload
        # routes do for a session opened with another token.
        foreign = (
            owner is not None and uuid in self._tasks and not self.has_local(uuid, token)
        ) or self._uploads.opened_by_other(uuid, token or "")
        if self._uploads.owns(uuid) and not foreign:
            stopped = await (self._uploads.cancel(uuid) if action == "cancel" else self._uploads.remove(uuid))
            result: dict[str, Any] = (
                {"success": True} if stopped else {"success": False, "error": f"{uuid} not found"}
            )
        elif (node := await self.find_node(uuid, token)) is not None:
            if action == "remove":
                self._routes.ensure_writable()  # the route must go with the task: refuse before either
            result = await self._post(node, f"/task/{action}", {"uuid": uuid}, drop_if_gone)
            if result.get("success") is True:
                self._routes.observe_status(uuid, TaskStatus.CANCELED)
            if action == "remove" and result.get("success") is True:
                await self._routes.remove(uuid)
                await self._tasks.remove(uuid)
        elif self.has_local(uuid, token):
            if action == "cancel":
                await self._tasks.set_status(uuid, TaskStatus.CANCELED)
            else:
                await self._tasks.remove(uuid)
                self._routes.timeline.forget([uuid])
            result = {"success": True}
        else:
            return {"error": no_route(uuid)}
        await self._notify_cancel(uuid)
        return result

    async def _notify_cancel(self, uuid: str) -> None:
        listener = self._cancel_listener()
        if listener is None:
            return
        try:
            await listener.on_task_cancelled(uuid)
        except Exception:
            log.exception("Autoscaler failed to handle the cancellation of %s", uuid)

    async def restart(
        self,
        uuid: str,
        token: str | None,
        options: str | builtins.list[Any] | None,
        *,
        drop_if_gone: bool = False,
    ) -> dict[str, Any]:
        """Restart on the node, with `options` re-validated against the token's limits (spec 8.25)."""
        node = await self.find_node(uuid, token)
        if node is None:
            if self.has_local(uuid, token) or self._uploads.owns(uuid):
                return {"error": NOT_SUPPORTED}
            return {"error": no_route(uuid)}
        fields = {"uuid": uuid}
        if options is not None and options != "":
            limits = NO_LIMITS if token is None else (await self._provider.validate(token)) or NO_LIMITS
            checked = await self._checked_options(node, options, limits)
            if isinstance(checked, dict):
                return checked
            fields["options"] = checked
        result = await self._post(node, "/task/restart", fields, drop_if_gone)
        if result.get("success") is True:
            self._routes.observe_status(uuid, TaskStatus.QUEUED)  # counts for maxConcurrentTasks again
        return result

    async def _checked_options(
        self, node: Node, options: str | builtins.list[Any], limits: Limits
    ) -> str | dict[str, Any]:
        try:
            node_options = await self._node_options.get(node)
        except NodeError as exc:
            return {"error": f"Cannot validate options: {exc}"}
        result = check_task_options(node_options, options, limits)
        if isinstance(result, OptionsError):
            return {"error": result.message}
        return orjson.dumps(result).decode()

    async def _post(
        self, node: Node, path: str, fields: dict[str, str], drop_if_gone: bool
    ) -> dict[str, Any]:
        """POST urlencoded `fields` with the node's token; the node's JSON object as it answered."""
        params = {"token": node.token} if node.token else None
        try:
            response = await self._http.post(
                node.base_url + path, params=params, data=fields, timeout=NODE_TIMEOUT_S
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if drop_if_gone:
                raise NodeGone(f"{node.name}: {exc}") from exc
            return {"error": f"Proxy redirect error: {node.name}: {exc.__class__.__name__}: {exc}"}
        except httpx.HTTPError as exc:
            return {"error": f"Proxy redirect error: {node.name}: {exc.__class__.__name__}: {exc}"}
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return {
                "error": f"Proxy redirect error: {node.name} answered HTTP {response.status_code}, not JSON"
            }
        return (
            body
            if isinstance(body, dict)
            else {"error": f"Proxy redirect error: {node.name} answered {body!r}"}
        )
