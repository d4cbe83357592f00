"""The admin CLI's command set (ClusterODM's, with its crashes and silences fixed).

A command is a list of words; the result is the lines to print before the next prompt. Every
failure path prints `INVALID`/`FAIL` instead of going quiet (spec 8.13), and `NODE BEST` only
looks: it never changes the round-robin turns (spec 8.12). A change the state store cannot take
(the database does not answer) prints `STORE_UNAVAILABLE` and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from clusterodm.admin.views import (
    node_line,
    node_public,
    pretty,
    queue_line,
    queue_order,
    replica_line,
    route_public,
)
from clusterodm.cluster.node import Node
from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable

if TYPE_CHECKING:
    from clusterodm.autoscale import Autoscaler
    from clusterodm.cluster.actions import TaskActions
    from clusterodm.cluster.health import HealthPoller
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.replicas import Replica
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.store import Store
    from clusterodm.cluster.tasks import TaskTable

RemoveNode = Callable[[Node, str], Awaitable[bool]]
"""Removes a node for an operator, giving the reason (an auto-spawned one also loses its machine)."""

log = logging.getLogger("clusterodm.admin")

OK = "OK"
FAIL = "FAIL"
INVALID = "INVALID"
STORE_UNAVAILABLE = f"FAIL: {UNAVAILABLE}"
"""A change refused because the database does not answer (nothing was changed)."""

Handler = Callable[[list[str]], Awaitable[list[str]]]

HELP = [
    "NODE ADD <hostname> <port> [token] - Add a processing node",
    "NODE DEL <node number> | <hostname> <port> - Remove a node (and its routes)",
    "NODE INFO <node number> - Show everything known about a node",
    "NODE LIST - List nodes",
    "NODE LOCK <node number> - Stop sending new tasks to a node",
    "NODE UNLOCK <node number> - Send new tasks to a node again",
    "NODE UPDATE - Poll every node's /info now",
    "NODE BEST <number of images> - Show the node a new task would go to",
    "ROUTE INFO <task uuid> - Show which node holds a task",
    "ROUTE LIST [node number] - List routes (of one node)",
    "TASK LIST [node number] - List tasks (of one node)",
    "TASK INFO <task uuid> - Show a task's info",
    "TASK OUTPUT <task uuid> [line] - Show a task's console output (from line)",
    "TASK CANCEL <task uuid> - Cancel a task",
    "TASK REMOVE <task uuid> - Remove a task",
    "QUEUE LIST - List the tasks waiting at the proxy for a free node, in the order they will go",
    "REPLICA LIST - List the clusterodm replicas sharing the database (heartbeat age, leader)",
    "ASR VIEWCMD <number of images> - Show the command that would create an autoscaled machine",
    "!! - Repeat the last command",
    "HELP - Show this list",
    "QUIT - Close the connection",
]

TASK_LIST_CONCURRENCY = 8


def _int(word: str) -> int | None:
    """A decimal integer argument, None when it is not one."""
    word = word.strip()
    if word.startswith("-"):
        return -int(word[1:]) if word[1:].isdigit() else None
    return int(word) if word.isdigit() else None


def _lines(text: str) -> list[str]:
    """Multi-line text as separate lines, so each one is sent with CRLF."""
    return text.split("\n")


class Commands:
    """Runs one parsed command against the cluster.

    `tasks` and `routes` say which uuids are known; `actions` answers for them as the API does.
    `store` holds the proxy's queue, `replica` lists the replicas, `poller` polls the nodes.
    """

    def __init__(
        self,
        *,
        registry: NodeRegistry,
        remove_node: RemoveNode,
        poller: HealthPoller,
        routes: RouteIndex,
        tasks: TaskTable,
        actions: TaskActions,
        store: Store,
        replica: Replica,
        autoscaler: Autoscaler | None,
    ) -> None:
        self._registry = registry
        self._remove_node = remove_node
        self._poller = poller
        self._routes = routes
        self._tasks = tasks
        self._actions = actions
        self._store = store
        self._replica = replica
        self._autoscaler = autoscaler
        self._table: dict[tuple[str, str], Handler] = {
            ("NODE", "ADD"): self.node_add,
            ("NODE", "DEL"): self.node_del,
            ("NODE", "INFO"): self.node_info,
            ("NODE", "LIST"): self.node_list,
            ("NODE", "LOCK"): self.node_lock,
            ("NODE", "UNLOCK"): self.node_unlock,
            ("NODE", "UPDATE"): self.node_update,
            ("NODE", "BEST"): self.node_best,
            ("ROUTE", "INFO"): self.route_info,
            ("ROUTE", "LIST"): self.route_list,
            ("TASK", "LIST"): self.task_list,
            ("TASK", "INFO"): self.task_info,
            ("TASK", "OUTPUT"): self.task_output,
            ("TASK", "CANCEL"): self.task_cancel,
            ("TASK", "REMOVE"): self.task_remove,
            ("QUEUE", "LIST"): self.queue_list,
            ("REPLICA", "LIST"): self.replica_list,
            ("ASR", "VIEWCMD"): self.asr_viewcmd,
        }

    async def run(self, words: list[str]) -> list[str]:
        """Lines answering `words` (command and subcommand are case-insensitive)."""
        if not words:
            return [INVALID]
        command = words[0].upper()
        if command == "HELP":
            return list(HELP)
        subcommand = words[1].upper() if len(words) > 1 else ""
        handler = self._table.get((command, subcommand))
        if handler is None:
            return [INVALID]
        try:
            return await handler(words[2:])
        except NotImplementedError:
            log.error("Admin CLI: %s %s is not available in this build", command, subcommand)
            return [FAIL]
        except StoreUnavailable:  # the store logs the outage once
            return [STORE_UNAVAILABLE]
        except Exception:
            log.exception("Admin CLI: %s %s failed", command, subcommand)
            return [FAIL]

    # -- nodes -------------------------------------------------------------------------------

    def _node(self, args: list[str]) -> Node | None:
        number = _int(args[0]) if args else None
        return None if number is None else self._registry.by_number(number)

    async def node_add(self, args: list[str]) -> list[str]:
        if len(args) < 2:
            return [INVALID]
        token = args[2] if len(args) > 2 else ""
        try:
            node = await self._registry.add(args[0], args[1], token)
        except ValueError:
            return [FAIL]
        if node is None:
            return [FAIL]
        # The health poller hears "added" from the registry and polls the node at once.
        log.info("Admin CLI: added node %s", node.name)
        return [OK]

    async def node_del(self, args: list[str]) -> list[str]:
        # By address as well as by number: a script removing the node it added (a SLURM job at
        # its end) cannot rely on a number that shifts whenever another node goes.
        node = self._registry.find(args[0], args[1]) if len(args) >= 2 else self._node(args)
        if node is None:
            return [FAIL]
        return [OK] if await self._remove_node(node, "NODE DEL from the admin CLI") else [FAIL]

    async def node_info(self, args: list[str]) -> list[str]:
        node = self._node(args)
        return [INVALID] if node is None else _lines(pretty(node_public(node)))

    async def node_list(self, args: list[str]) -> list[str]:
        registry = self._registry
        now = registry.now()
        return [node_line(i, node, now) for i, node in enumerate(registry.nodes, start=1)] + [""]

    async def node_lock(self, args: list[str]) -> list[str]:
        node = self._node(args)
        if node is None:
            return [FAIL]
        await self._registry.lock(node)  # False only when it was locked already: still OK
        return [OK]

    async def node_unlock(self, args: list[str]) -> list[str]:
        node = self._node(args)
        if node is None:
            return [FAIL]
        await self._registry.unlock(node)
        return [OK]

    async def node_update(self, args: list[str]) -> list[str]:
        await self._poller.poll_all()
        return [OK]

    async def node_best(self, args: list[str]) -> list[str]:
        images = _int(args[0]) if args else None
        if images is None or images < 0:
            return [INVALID]
        registry = self._registry
        node = registry.best(images)
        if node is None:
            return ["No best node available"]
        return [node_line(1, node, registry.now())]

    # -- routes ------------------------------------------------------------------------------

    async def route_info(self, args: list[str]) -> list[str]:
        route = self._routes.peek(args[0]) if args else None
        return [INVALID] if route is None else _lines(pretty(route_public(route)))

    async def route_list(self, args: list[str]) -> list[str]:
        routes = self._routes.entries()
        if args:
            node = self._node(args)
            if node is None:
                return [INVALID]
            routes = [r for r in routes if r.node is node]
        return _lines(pretty({r.uuid: route_public(r) for r in routes}))

    # -- the proxy's task queue ------------------------------------------------------------------

    async def queue_list(self, args: list[str]) -> list[str]:
        queue = await self._store.load_queue()
        if not queue:
            return ["No task is waiting for a node", ""]
        registry = self._registry
        now = registry.now()
        lines = [queue_line(p, t, now, node) for p, t, node in queue_order(queue, registry.get)]
        return lines + [""]

    # -- replicas ----------------------------------------------------------------------------

    async def replica_list(self, args: list[str]) -> list[str]:
        replicas = await self._replica.current()
        return [replica_line(i, r) for i, r in enumerate(replicas, start=1)] + [""]

    # -- tasks -------------------------------------------------------------------------------

    def _known_task(self, uuid: str) -> bool:
        """A uuid we route or hold locally; anything else is `INVALID` without asking a node."""
        return uuid in self._tasks or self._routes.peek(uuid) is not None

    async def task_list(self, args: list[str]) -> list[str]:
        if args:
            node = self._node(args)
            if node is None:
                return [INVALID]
            uuids = self._routes.for_node(node)
        else:
            uuids = [str(t["uuid"]) for t in await self._actions.list(None) if "uuid" in t]
        limit = asyncio.Semaphore(TASK_LIST_CONCURRENCY)

        async def fetch(uuid: str) -> dict[str, Any] | None:
            async with limit:
                try:
                    info = await self._actions.info(uuid, None)
                except NotImplementedError:
                    raise
                except Exception as exc:  # one bad node must not hide the others' tasks
                    log.debug("TASK LIST: %s: %s", uuid, exc)
                    return None
            return None if "error" in info else info

        infos = await asyncio.gather(*(fetch(u) for u in uuids))
        return _lines(pretty([i for i in infos if i is not None]))

    async def task_info(self, args: list[str]) -> list[str]:
        if not args or not self._known_task(args[0]):
            return [INVALID]
        return _lines(pretty(await self._actions.info(args[0], None)))

    async def task_output(self, args: list[str]) -> list[str]:
        if not args or not self._known_task(args[0]):
            return [INVALID]
        line = args[1] if len(args) > 1 else None
        output = await self._actions.output(args[0], None, line)
        if isinstance(output, dict):
            return _lines(pretty(output))
        return [str(x) for x in output]

    async def task_cancel(self, args: list[str]) -> list[str]:
        if not args or not self._known_task(args[0]):
            return [INVALID]
        return _lines(pretty(await self._actions.cancel(args[0], None)))

    async def task_remove(self, args: list[str]) -> list[str]:
        if not args or not self._known_task(args[0]):
            return [INVALID]
        return _lines(pretty(await self._actions.remove(args[0], None)))

    # -- autoscaler --------------------------------------------------------------------------

    async def asr_viewcmd(self, args: list[str]) -> list[str]:
        autoscaler = self._autoscaler
        images = _int(args[0]) if args else None
        if autoscaler is None or images is None or images < 0:
            return [INVALID]
        return _lines(autoscaler.view_command(images))
