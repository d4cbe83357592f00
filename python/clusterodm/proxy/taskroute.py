"""`/task/{uuid}/{action}`: the S3 shortcut, the routed streaming proxy, or the local task table.

This is the hot path (WebODM polls `info` every few seconds per task), so it runs as plain ASGI
code called by `ProxyFront`, without Starlette's request objects or routing.

The path a node receives is rebuilt from the parsed uuid and action, never the client's raw
path: ClusterODM passed the raw URL on, so `/task/<mine>/../../task/<theirs>/info` (or its
percent-encoded forms) reached another owner's task once anything on the way normalised it.
Dot segments, empty segments and encoded slashes in the action are refused here instead, with
the JSON errors NodeODM gives for them (spec 9.8). Like Express, the route matches
case-insensitively and with one trailing slash.
"""

from __future__ import annotations

import asyncio
import re
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote_from_bytes, unquote_to_bytes

from clusterodm.cluster.actions import no_task_entry, no_valid_route
from clusterodm.nodeodm.messages import INVALID_ASSET, UUID_NOT_FOUND
from clusterodm.nodeodm.status import status_code_in
from clusterodm.proxy.forward import Receive, Scope, Send, forward, send_json
from clusterodm.proxy.query import node_query, query_value
from clusterodm.proxy.upstream import Upstream

if TYPE_CHECKING:
    from clusterodm.autoscale.s3 import S3Downloads
    from clusterodm.cluster.actions import TaskActions
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.metrics import Metrics
    from clusterodm.proxy.handoff import UploadHandoff

_SMALL_ACTIONS = frozenset({"info", "output"})
"""Actions whose answers are small JSON documents (read whole instead of streamed)."""
_TASK_PATH = re.compile(rb"/task/(\w+-\w+-\w+-\w+-\w+)/(.+)", re.DOTALL | re.IGNORECASE)
"""ClusterODM's uuid rule (five `\\w+` groups), matched on the raw (still encoded) path."""
_ENCODED_UUID = re.compile(rb"/task/([^/]*%[^/]*)/.", re.DOTALL | re.IGNORECASE)
_VERBS = frozenset({b"info", b"output", b"download"})
"""NodeODM's task actions; written in lower case to the node whatever case the client used."""
_BAD_SEGMENTS = frozenset({b"", b".", b".."})
_PCHAR_SAFE = "!$&'()*+,;=:@~"
"""Characters a path segment may carry unencoded (RFC 3986 `pchar`, besides letters and digits)."""


class TaskPath(NamedTuple):
    """A task-scoped request, parsed."""

    uuid: str
    action: str
    """Decoded action (`info`, `output`, `download/all.zip`, or anything else a client sent)."""
    target: str
    """The path sent to the node: `/task/{uuid}/{action}`, percent-encoded again."""


_PLAIN = {raw: raw.decode().rstrip("/") for raw in (b"info", b"output", b"info/", b"output/")}
"""The actions nearly every request uses, already parsed."""


def match_task_path(raw_path: bytes) -> TaskPath | str | None:
    """The task route `raw_path` names; a str is the JSON error refusing it; None: not a task route."""
    match = _TASK_PATH.fullmatch(raw_path)
    if match is None:
        return _encoded_uuid(raw_path)
    uuid = match[1].decode("ascii")
    action = _PLAIN.get(match[2])
    if action is not None:
        return TaskPath(uuid, action, f"/task/{uuid}/{action}")
    return _parse_action(uuid, match[2], raw_path)


def _encoded_uuid(raw_path: bytes) -> str | None:
    """NodeODM's answer to a uuid with an encoded slash; None for every other path."""
    match = _ENCODED_UUID.match(raw_path)
    if match is not None and b"/" in unquote_to_bytes(match[1]):
        return UUID_NOT_FOUND
    return None


def _parse_action(uuid: str, raw_action: bytes, raw_path: bytes) -> TaskPath | str:
    segments = raw_action.split(b"/")
    if len(segments) > 1 and segments[-1] == b"":
        segments.pop()  # Express allows one trailing slash
    decoded = [unquote_to_bytes(s) if b"%" in s else s for s in segments]
    verb = decoded[0].lower()
    if verb in _VERBS:
        decoded[0] = verb
    for segment in decoded:
        if segment in _BAD_SEGMENTS or b"/" in segment:
            if verb == b"download" and len(decoded) > 1:
                return INVALID_ASSET
            return f"Cannot handle {unquote_to_bytes(raw_path).decode('utf-8', 'replace')}"
    encoded = "/".join(quote_from_bytes(s, safe=_PCHAR_SAFE) for s in decoded)
    action = b"/".join(decoded).decode("utf-8", "replace")
    return TaskPath(uuid, action, f"/task/{uuid}/{encoded}")


class TaskRoute:
    """Answers `/task/{uuid}/{action}`: `s3` for downloads when set, the node holding the task
    (through `upstream`; long answers register in `streams`), `actions`' local task table, then
    `handoff` (replicas sharing a store), in that order. `routes` hears the statuses forwarded."""

    def __init__(
        self,
        actions: TaskActions,
        routes: RouteIndex,
        upstream: Upstream,
        *,
        s3: S3Downloads | None,
        handoff: UploadHandoff | None,
        streams: set[asyncio.Task[Any]],
        metrics: Metrics,
    ) -> None:
        self._actions = actions
        self._routes = routes
        self._upstream = upstream
        self._s3 = s3
        self._handoff = handoff
        self._streams = streams
        self._timings = metrics.routed if metrics.enabled else None

    async def handle(self, scope: Scope, receive: Receive, send: Send, task: TaskPath, token: str) -> None:
        actions = self._actions
        s3 = self._s3
        uuid, action = task.uuid, task.action
        node = actions.node_for(uuid, token)
        if node is None and actions.shared:  # another replica's route: ask the database (cached after)
            node = await actions.find_node(uuid, token)
        if s3 is not None and action.startswith("download/"):
            # Only for the task's owner: a redirect would hand anyone the object (spec 8.20).
            if node is not None or actions.has_local(uuid, token) or not actions.enforce_owner:
                response = await s3.download_response(uuid, action[len("download/") :])
                await response(scope, receive, send)
            else:
                await send_json(send, {"error": no_task_entry(uuid, action)})
            return
        if node is not None:
            query = node_query(scope["query_string"], node.token)
            target = f"{task.target}?{query}" if query else task.target
            small = action in _SMALL_ACTIONS and scope["method"] == "GET"
            started = perf_counter() if self._timings is not None else 0.0
            try:
                body = await forward(
                    scope,
                    receive,
                    send,
                    self._upstream,
                    node.base_url,
                    target,
                    node.name,
                    small=small,
                    streams=self._streams,
                )
            finally:
                if self._timings is not None:
                    self._timings.of(node).observe(perf_counter() - started)
            if body is not None and action == "info":
                self._routes.observe_status(uuid, status_code_in(body))  # for maxConcurrentTasks
            return
        handoff = self._handoff  # replicas: another one may hold the task before it is on a node
        if handoff is not None and not actions.has_local(uuid, token):
            # The holder's live answer first: the store's copy of its entry lags by a flush.
            if await handoff.take_task(scope, receive, send, task, token):
                return
            handoff = None  # asked already
        if action == "info":
            view = await actions.stored_info(uuid, token, query_value(scope["query_string"], "with_output"))
            if view is not None:
                await send_json(send, view)
                return
        elif action == "output":
            lines = await actions.stored_output(uuid, token, query_value(scope["query_string"], "line"))
            if lines is not None:
                await send_json(send, lines)
                return
        elif actions.has_local(uuid, token):
            await send_json(send, {"error": no_valid_route(uuid, action)})
            return
        if handoff is not None and await handoff.take_task(scope, receive, send, task, token):
            return
        await send_json(send, {"error": no_task_entry(uuid, action)})
