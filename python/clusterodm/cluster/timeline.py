"""Status changes of tasks as the cluster learns them, for the admin web's task detail view.

The cluster hears of a task's status from several places: the pipeline creating its local entry
and handing it to a node, every task-info answer passing through the proxy, webhooks, restarts
and the admin views' own reads. `RouteIndex.observe_status` and `TaskTable` report each of those
here; only changes are kept. It is memory only and bounded (the oldest tasks are forgotten first,
and each task keeps its last `max_changes` changes): it explains what happened recently, it is
not an audit log.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from clusterodm.cluster.clock import Clock, now_ms

__all__ = ["Change", "StatusTimeline"]

CLUSTER = "clusterodm"
"""`where` of a status held by clusterodm itself (an upload or a forward in progress)."""


class Change(NamedTuple):
    at_ms: int
    code: int
    where: str
    """`clusterodm` while the task is held here, else the name of its node (`host:port`)."""


class StatusTimeline:
    """uuid -> the task's status changes, oldest first; least recently changed tasks drop first."""

    def __init__(self, *, max_tasks: int = 5000, max_changes: int = 50, clock: Clock = now_ms) -> None:
        self.max_tasks = max_tasks
        self.max_changes = max_changes
        self._clock = clock
        self._tasks: OrderedDict[str, list[Change]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._tasks

    def observe(self, uuid: str, code: int, where: str = CLUSTER) -> None:
        """News that `uuid` has status `code` (held at `where`); recorded if it is a change."""
        changes = self._tasks.get(uuid)
        if changes is None:
            changes = self._tasks[uuid] = []
            while len(self._tasks) > self.max_tasks:
                self._tasks.popitem(last=False)
        elif changes[-1].code == code and changes[-1].where == where:
            return
        else:
            self._tasks.move_to_end(uuid)
        changes.append(Change(self._clock(), int(code), where))
        if len(changes) > self.max_changes:
            del changes[0]

    def forget(self, uuids: Iterable[str]) -> None:
        """Tasks removed for good: nobody can ask for their changes any more."""
        for uuid in uuids:
            self._tasks.pop(uuid, None)

    def changes(self, uuid: str) -> list[Change]:
        return list(self._tasks.get(uuid, ()))

    def last(self, uuid: str) -> int | None:
        """The last status code heard of `uuid`, None if none."""
        changes = self._tasks.get(uuid)
        return changes[-1].code if changes else None

    def latest(self) -> list[tuple[str, int]]:
        """(uuid, last status code) of every task remembered."""
        return [(uuid, changes[-1].code) for uuid, changes in self._tasks.items()]
