"""How nodes, routes, replicas and the proxy's task queue look to operators: the CLI's text lines
and the admin web's JSON.

Both admin interfaces show the same facts, so they share these functions. Node tokens never
leave through them (spec 8.23): `node_public` is the only way node data gets out. Text a node
sent (engine names, task output, errors) reaches an operator's terminal only through
`terminal_safe`, so a node cannot move the cursor, retitle the window or hide lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from clusterodm.autoscale.machine import MASK, is_secret_flag
from clusterodm.cluster.node import Node
from clusterodm.cluster.queue import positions
from clusterodm.cluster.replicas import ReplicaView
from clusterodm.cluster.routing import Route
from clusterodm.cluster.store import QueuedTask

_CONTROL_SEQUENCES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]            # CSI: colours, cursor moves, erase (ESC [ or 8-bit)
    | (?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])      # OSC, DCS, SOS, PM, APC: a string...
      [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?        # ...up to BEL or ST (or the end of the text)
    | \x1b[ -/]*[0-~]?                           # any other ESC sequence (charset, keypad...)
    | [\x00-\x1f\x7f-\x9f]                       # what is left of C0, DEL and C1
    """,
    re.VERBOSE,
)


def terminal_safe(text: str) -> str:
    """`text` without control characters or escape sequences (the whole sequence, not just ESC)."""
    return _CONTROL_SEQUENCES.sub("", text)


def pretty(value: Any) -> str:
    """JSON with a 2-space indent, as ClusterODM's `JSON.stringify(value, null, 2)` prints it."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _known(value: object) -> str:
    return "?" if value is None else str(value)


def node_line(number: int, node: Node, now_ms: int) -> str:
    """One `NODE LIST` line: `1) host:port [online] [0/2] <engine: odm 3.5.1> <API: 2.2.4> [L]`."""
    state = "online" if node.online(now_ms) else "offline"
    queue = f"[{_known(node.task_queue_count)}/{_known(node.max_parallel_tasks)}]"
    if node.engine is None:
        engine = "<engine: ?>"
    else:
        engine = f"<engine: {node.engine} {_known(node.engine_version)}>"
    line = f"{number}) {node.name} [{state}] {queue} {engine} <API: {_known(node.version)}>"
    flags = [flag for flag, on in (("L", node.locked), ("A", node.auto_spawned)) if on]
    if flags:
        line += f" [{','.join(flags)}]"
    return line


def replica_line(number: int, replica: ReplicaView) -> str:
    """One `REPLICA LIST` line:
    `1) 5f3a9c1e http://10.0.0.5:3000 [alive] heartbeat 0.8 s ago [leader] [this]`."""
    state = "alive" if replica.alive else "dead"
    age = f"{replica.heartbeat_age_ms / 1000:.1f}"
    line = f"{number}) {replica.id} {replica.address} [{state}] heartbeat {age} s ago"
    flags = [flag for flag, on in (("leader", replica.leader), ("this", replica.this)) if on]
    return line + "".join(f" [{flag}]" for flag in flags)


def replica_public(replica: ReplicaView) -> dict[str, Any]:
    """A replica for the admin web's table."""
    return {
        "id": replica.id,
        "address": replica.address,
        "startedAt": replica.started_ms,
        "heartbeatAgeMs": replica.heartbeat_age_ms,
        "alive": replica.alive,
        "leader": replica.leader,
        "this": replica.this,
    }


QueueRow = tuple[int | None, QueuedTask, str | None]
"""(waiting position or None once given a node, the task, the name of its node if it has one)."""


def queue_order(queue: Sequence[QueuedTask], node: Callable[[int], Node | None]) -> list[QueueRow]:
    """The queue as the admin lists it: tasks already given a node first (no position, they are
    leaving), then the waiting ones with the position their own output shows (`position 3 of 7`).
    No owner: an operator sees the order, not whose tasks they are. `node`: the registry's `get`."""

    def name(node_id: int) -> str | None:
        known = node(node_id)
        return None if known is None else known.name

    places = positions(queue)
    leaving: list[QueueRow] = [(None, t, name(t.node_id)) for t in queue if t.node_id is not None]
    return leaving + [(places[t.uuid][0], t, None) for t in queue if t.waiting]


def queue_state(task: QueuedTask) -> str:
    """`waiting` for a node, `assigned` a node (its forward not begun), or `sending` to it."""
    if task.node_id is None:
        return "waiting"
    return "sending" if task.started else "assigned"


def _waited(ms: int) -> str:
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def queue_line(position: int | None, task: QueuedTask, now_ms: int, node: str | None) -> str:
    """One `QUEUE LIST` line: `1) <uuid> [waiting] 12 images, waited 3 min 5 s`; a task given a
    node has no position: `-) <uuid> [sending] 12 images, waited 3 min 5 s -> host:port`."""
    line = f"{'-' if position is None else position}) {task.uuid} [{queue_state(task)}] {task.images} images"
    line += f", waited {_waited(now_ms - task.enqueued_ms)}"
    return line if task.node_id is None else f"{line} -> {node or '?'}"


def queue_public(position: int | None, task: QueuedTask, now_ms: int, node: str | None) -> dict[str, Any]:
    """A queued task for the admin web's queue table (no owner, no token)."""
    return {
        "position": position,
        "uuid": task.uuid,
        "images": task.images,
        "enqueuedAt": task.enqueued_ms,
        "waitedMs": max(0, now_ms - task.enqueued_ms),
        "state": queue_state(task),
        "node": node,
    }


def node_public(node: Node) -> dict[str, Any]:
    """The node's full state (ClusterODM's `nodeData`) without its token."""
    data = node.node_data()
    data.pop("token", None)
    return data


def engine_info(node: Node) -> dict[str, str]:
    """`{engine, engineVersion}` when the node told us, else `{}`."""
    if node.engine is None:
        return {}
    return {"engine": node.engine, "engineVersion": node.engine_version or "?"}


def node_summary(number: int, node: Node, now_ms: int, free_slots: int) -> dict[str, Any]:
    """An element of `GET /r/node/list`: ClusterODM's shape minus the token, plus poll details."""
    age = now_ms - node.last_refreshed_ms if node.last_refreshed_ms else None
    return {
        "number": number,
        "name": node.name,
        "isLocked": node.locked,
        "isAutoSpawned": node.auto_spawned,
        "isOnline": node.online(now_ms),
        "getTaskQueueCount": node.task_queue_count,
        "getMaxParallelTasks": node.max_parallel_tasks,
        "getEngineInfo": engine_info(node),
        "getVersion": node.version,
        "availableSlots": free_slots,
        "lastPollAgeMs": age,
        "lastError": node.last_error,
        "nodeData": node_public(node),
    }


def route_public(route: Route) -> dict[str, Any]:
    """A route as `ROUTE INFO` shows it: ClusterODM's `{node, accessed}` (tokens are not kept)."""
    node = route.node.to_clusterodm_json()
    node.pop("token", None)
    return {"node": node, "accessed": route.accessed_ms}


_QUERY_TOKEN = re.compile(r"([?&](?:token|secret|password|passphrase|key)=)[^&#\s]*", re.IGNORECASE)


def is_secret_option(name: str) -> bool:
    """Whether a task option's value is a credential: a word of its name (split at `-`/`_`) is one
    of token, secret, password, passphrase or key, as the autoscaler masks docker-machine flags."""
    return is_secret_flag(name.replace("_", "-"))


def options_public(options: object) -> list[dict[str, Any]]:
    """A task's `options` for the admin views: the value of a secret option shown as `****`, and a
    token in a URL value (`sm-cluster` carries the user's `?token=`) too."""
    if not isinstance(options, list):
        return []
    shown: list[dict[str, Any]] = []
    for option in options:
        if not isinstance(option, dict) or not isinstance(option.get("name"), str):
            continue
        name, value = option["name"], option.get("value")
        if is_secret_option(name):
            value = MASK
        elif isinstance(value, str):
            value = _QUERY_TOKEN.sub(rf"\g<1>{MASK}", value)
        shown.append({"name": name, "value": value})
    return shown
