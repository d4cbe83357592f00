"""The proxy's task queue as a model: where each waiting task stands, and which go to which node.

The order itself is the store's (`QueuedTask`: fair-queuing tag, then arrival): owners take turns,
each owner's tasks keep their order. This module only reads it, so every replica computes the
same positions from the same rows, and the leader's decisions are a pure function of the rows and
of what it knows of the nodes (tested without processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from clusterodm.cluster.store import QueuedTask

__all__ = ["WAITING_PREFIX", "Assignment", "plan", "positions", "waiting_line"]

WAITING_PREFIX = "Waiting for a free node: position "


def waiting_line(position: int, total: int) -> str:
    """The output line of a waiting task (replaced, not appended, as the queue moves)."""
    return f"{WAITING_PREFIX}{position} of {total}"


def positions(queue: Iterable[QueuedTask]) -> dict[str, tuple[int, int]]:
    """uuid -> (1-based position, number waiting) of every task still waiting for a node."""
    waiting = [q.uuid for q in queue if q.waiting]
    return {uuid: (i, len(waiting)) for i, uuid in enumerate(waiting, 1)}


@dataclass(frozen=True, slots=True)
class Assignment:
    task: QueuedTask
    node_id: int


def plan(
    queue: Iterable[QueuedTask],
    ranked: Callable[[int], list[int]],
    free: Mapping[int, int],
    owner_room: Callable[[QueuedTask], int | None],
) -> tuple[list[Assignment], list[QueuedTask]]:
    """Which waiting tasks go where now, and which found no node.

    `queue` in dispatch order; `ranked(node_files)` the node ids that may take a task of that
    many files (image limit, online, unlocked), best first; `free` each node's free slots now;
    `owner_room(task)` how many more tasks its owner may start (None: no limit). A task goes to
    the best ranked node with a free slot; one that fits nowhere does not hold back the tasks
    behind it (they may fit nodes with smaller image limits), and an owner at its
    maxConcurrentTasks lets the next owner go first. The second list: tasks their owner could
    start but no node has a slot for (the autoscaler's candidates).
    """
    slots = dict(free)
    room: dict[int, int | None] = {}
    assignments: list[Assignment] = []
    unplaced: list[QueuedTask] = []
    for task in queue:
        if not task.waiting:
            continue
        if task.owner_id not in room:
            room[task.owner_id] = owner_room(task)
        left = room[task.owner_id]
        if left is not None and left <= 0:
            continue
        node_id = next((n for n in ranked(task.node_files) if slots.get(n, 0) > 0), None)
        if node_id is None:
            unplaced.append(task)
            continue
        slots[node_id] -= 1
        if left is not None:
            room[task.owner_id] = left - 1
        assignments.append(Assignment(task, node_id))
    return assignments, unplaced
