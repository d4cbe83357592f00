"""Tasks the proxy answers for itself, before a node has them or after their node is gone.

Entries: uploads in progress, forwards in progress, failed forwards, tasks cancelled before
forwarding, and the final info of tasks whose auto-spawned node was destroyed. ClusterODM keeps
these in memory only (spec 8.17: a restart loses finished autoscaled tasks); here they are written
through to the store. Output appends are batched (flushed within a second and at shutdown)
because forwards log progress line by line, and stored by appending to the stored lines, never by
rewriting them, so replicas writing lines of one task at once lose none.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from clusterodm.cluster.batching import DelayedFlush
from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.store import Store, StoreError, TaskRecord
from clusterodm.cluster.timeline import StatusTimeline
from clusterodm.nodeodm.jsnum import coerce_line, slice_lines
from clusterodm.nodeodm.status import TaskStatus, status_code

__all__ = ["LocalTask", "TaskTable"]

log = logging.getLogger("clusterodm.tasks")

LocalTask = TaskRecord
"""A local task: `uuid`, `owner_id`, `info` (NodeODM task-info shape), `output` lines, timestamps."""

DEFAULT_MAX_AGE_MS = 30 * 86_400_000
OUTPUT_FLUSH_DELAY_S = 1.0
MISSING_TTL_MS = 3_000
MISSING_MAX = 10_000


class TaskTable:
    """Local task entries, durable through `store`; `get`-style reads refresh the access time.

    Create with `await TaskTable.open(store)`, which loads the stored entries.
    """

    def __init__(
        self,
        store: Store,
        tasks: list[LocalTask],
        *,
        clock: Clock = now_ms,
        timeline: StatusTimeline | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._timeline = timeline
        """Where status changes are reported (the admin web's task detail view)."""
        self._tasks: dict[str, LocalTask] = {t.uuid: t for t in tasks}
        self._dirty: set[str] = set()  # entries whose output was rewritten since the last flush
        self._appended: dict[str, list[str]] = {}
        """Lines appended since the last flush (stored by appending, never by rewriting)."""
        self._touched: set[str] = set()  # entries whose access time changed since the last flush
        self._later = DelayedFlush(self.flush, OUTPUT_FLUSH_DELAY_S, "the local task table")
        self._missing: dict[str, int] = {}
        """uuids another replica was asked for and had no entry, until when (ms): a flood of
        unknown uuids reaches the store once per uuid and period."""
        self._running: dict[int, set[str]] = {}
        """owner id -> uuids of RUNNING entries (forwards in progress), for `running_count`."""
        for task in self._tasks.values():
            self._index(task)

    @classmethod
    async def open(
        cls, store: Store, *, clock: Clock = now_ms, timeline: StatusTimeline | None = None
    ) -> TaskTable:
        return cls(store, await store.load_tasks(), clock=clock, timeline=timeline)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._tasks

    # -- writes (write-through) ------------------------------------------------------------------

    async def put(self, task: LocalTask) -> None:
        """Insert or replace an entry. The table keeps `task` itself: change it only via methods."""
        now = self._clock()
        task.updated_ms = now
        task.accessed_ms = now
        previous = self._tasks.get(task.uuid)
        if previous is not None:
            self._unindex(previous)
        self._tasks[task.uuid] = task
        try:
            await self._write(task)
        except StoreError:  # nothing half-way: the table is as it was
            self._unindex(task)
            if previous is None:
                del self._tasks[task.uuid]
            else:
                self._tasks[task.uuid] = previous
                self._index(previous)
            raise

    async def admit(self, task: LocalTask, limit: int, skip_nodes: list[int]) -> bool:
        """`put` a task being launched (status RUNNING) unless its owner has `limit` tasks running
        cluster-wide (`Store.admit_task`); False (nothing changed) when it has."""
        now = self._clock()
        task.updated_ms = task.accessed_ms = now
        if self._tasks.get(task.uuid) is not None:
            await self.put(task)  # a relaunch of a known entry: no new admission
            return True
        if not await self._store.admit_task(task, limit, skip_nodes):
            return False
        self._tasks[task.uuid] = task
        self._index(task)
        code = status_code(task.info)
        if self._timeline is not None and code is not None:
            self._timeline.observe(task.uuid, code)
        return True

    async def _write(self, task: LocalTask) -> None:
        self._dirty.discard(task.uuid)
        self._appended.pop(task.uuid, None)  # the whole row goes, these lines with it
        self._touched.discard(task.uuid)
        self._index(task)
        await self._store.put_tasks([task])
        code = status_code(task.info)
        if self._timeline is not None and code is not None:
            self._timeline.observe(task.uuid, code)

    def _index(self, task: LocalTask) -> None:
        status = task.info.get("status")
        if isinstance(status, dict) and status.get("code") == TaskStatus.RUNNING:
            self._running.setdefault(task.owner_id, set()).add(task.uuid)
        else:
            self._unindex(task)

    def _unindex(self, task: LocalTask) -> None:
        running = self._running.get(task.owner_id)
        if running is not None:
            running.discard(task.uuid)
            if not running:
                del self._running[task.owner_id]

    async def remove(self, uuid: str) -> bool:
        task = self._tasks.pop(uuid, None)
        if task is None:
            return False
        self._unindex(task)
        dirty, touched = uuid in self._dirty, uuid in self._touched
        appended = self._appended.pop(uuid, None)
        self._dirty.discard(uuid)
        self._touched.discard(uuid)
        try:
            await self._store.delete_tasks([uuid])
        except StoreError:  # still there: put it back as it was
            self._tasks[uuid] = task
            self._index(task)
            if dirty:
                self._dirty.add(uuid)
            if appended:
                self._appended[uuid] = appended
            if touched:
                self._touched.add(uuid)
            raise
        return True

    async def set_status(self, uuid: str, code: int, error_message: str | None = None) -> bool:
        """Set `status` (an old errorMessage is dropped unless a new one is given)."""
        task = self._tasks.get(uuid)
        if task is None:
            return False
        status: dict[str, Any] = {"code": int(code)}
        if error_message is not None:
            status["errorMessage"] = error_message
        task.info["status"] = status
        task.updated_ms = self._clock()
        self._index(task)
        # The info alone: output lines other replicas appended to this task stay (ours are
        # appended by the next flush).
        await self._store.set_task_info(uuid, task.info, task.updated_ms)
        if self._timeline is not None:
            self._timeline.observe(uuid, int(code))
        return True

    def append_output(self, uuid: str, line: str) -> bool:
        """Append an output line; persisted by the next flush (scheduled within a second)."""
        task = self._tasks.get(uuid)
        if task is None:
            return False
        task.output.append(line)
        task.updated_ms = self._clock()
        if uuid not in self._dirty:  # a rewrite pending carries it anyway
            self._appended.setdefault(uuid, []).append(line)
        self._later.schedule()
        return True

    def replace_line(self, uuid: str, prefix: str, line: str) -> bool:
        """Replace the last output line if it starts with `prefix`, else append `line` (a status
        line that changes in place, like a queue position); False if nothing changed."""
        task = self._tasks.get(uuid)
        if task is None:
            return False
        if task.output and task.output[-1].startswith(prefix):
            if task.output[-1] == line:
                return False
            task.output[-1] = line
        else:
            task.output.append(line)
        task.updated_ms = self._clock()
        self._dirty.add(uuid)  # a line changed in place: the output is written whole
        self._appended.pop(uuid, None)
        self._later.schedule()
        return True

    async def flush(self) -> None:
        """Persist batched output appends and access times (call at shutdown too)."""
        self._later.cancel()
        dirty = [self._tasks[u] for u in self._dirty if u in self._tasks]
        appended = [
            (u, lines, self._tasks[u].updated_ms) for u, lines in self._appended.items() if u in self._tasks
        ]
        touched = [(u, self._tasks[u].accessed_ms) for u in self._touched - self._dirty if u in self._tasks]
        self._dirty.clear()
        self._appended = {}
        self._touched.clear()
        try:
            if dirty:
                await self._store.put_tasks(dirty)
            if appended:
                await self._store.append_task_output(appended)
            if touched:
                await self._store.touch_tasks(touched)
        except StoreError:
            self._dirty.update(t.uuid for t in dirty)  # written by the next flush
            for uuid, lines, _ in appended:
                if uuid not in self._dirty:
                    self._appended[uuid] = [*lines, *self._appended.get(uuid, [])]
            self._touched.update(u for u, _ in touched)
            raise

    async def close(self) -> None:
        await self._later.wait()
        await self.flush()

    # -- reads -------------------------------------------------------------------------------

    def get(self, uuid: str, owner_id: int | None = None) -> LocalTask | None:
        """Entry for `uuid`; with `owner_id`, None unless that owner created it. Treat as read-only."""
        task = self._tasks.get(uuid)
        if task is None or (owner_id is not None and task.owner_id != owner_id):
            return None
        task.accessed_ms = self._clock()
        self._touched.add(uuid)
        return task

    def entries(self) -> list[LocalTask]:
        """Snapshot of every entry without refreshing access times (admin views). Treat as read-only."""
        # Added for the admin web's task table (admin helper); reads must not keep entries alive.
        return list(self._tasks.values())

    def for_owner(self, owner_id: int) -> list[str]:
        return [u for u, t in self._tasks.items() if t.owner_id == owner_id]

    def running_count(self, owner_id: int) -> int:
        """Entries of `owner_id` that are RUNNING here (forwards to a node in progress)."""
        return len(self._running.get(owner_id, ()))

    def running_of(self, owner_id: int) -> set[str]:
        """The uuids `running_count` counts."""
        return set(self._running.get(owner_id, ()))

    def info_view(
        self,
        uuid: str,
        with_output: str | None = None,
        owner_id: int | None = None,
        now_ms: int | None = None,
    ) -> dict[str, Any] | None:
        """Task info as `/task/{uuid}/info` returns it: a copy, never the stored object (spec 8.3).

        `processingTime` is synthesised (now - dateCreated) while RUNNING; otherwise the stored
        value or -1. `with_output` is coerced like JS parseInt (negative = last lines).
        """
        task = self.get(uuid, owner_id)
        if task is None:
            return None
        return self._render_info(task, with_output, now_ms)

    def _render_info(self, task: LocalTask, with_output: str | None, now_ms: int | None) -> dict[str, Any]:
        view = copy.deepcopy(task.info)
        view["uuid"] = task.uuid
        status = view.get("status")
        code = status.get("code") if isinstance(status, dict) else None
        created = view.get("dateCreated")
        if code == TaskStatus.RUNNING and isinstance(created, int | float) and not isinstance(created, bool):
            view["processingTime"] = max(0, (self._clock() if now_ms is None else now_ms) - int(created))
        elif not isinstance(view.get("processingTime"), int | float):
            view["processingTime"] = -1
        if with_output is not None:
            view["output"] = slice_lines(task.output, coerce_line(with_output))
        return view

    def output_view(
        self, uuid: str, line: str | None = None, owner_id: int | None = None
    ) -> list[str] | None:
        """Output lines from `line` on (`/task/{uuid}/output?line=N`, JS coercion)."""
        task = self.get(uuid, owner_id)
        if task is None:
            return None
        return slice_lines(task.output, coerce_line(line))

    async def remote(self, uuid: str, owner_id: int | None = None) -> LocalTask | None:
        """The entry another replica keeps for `uuid` (a forward there, or the final info of a task
        whose node is gone), read from the shared store and not kept here (it may change there);
        None without a shared store, or when recently found missing."""
        if not self._store.shared or uuid in self._tasks:
            return None
        now = self._clock()
        if self._missing.get(uuid, 0) > now:
            return None
        task = await self._store.get_task(uuid)
        if task is None:
            if len(self._missing) >= MISSING_MAX:
                self._missing.clear()
            self._missing[uuid] = now + MISSING_TTL_MS
            return None
        return task if owner_id is None or task.owner_id == owner_id else None

    async def remote_info(
        self, uuid: str, with_output: str | None = None, owner_id: int | None = None
    ) -> dict[str, Any] | None:
        """`info_view` of another replica's entry (`remote`)."""
        task = await self.remote(uuid, owner_id)
        return None if task is None else self._render_info(task, with_output, None)

    async def remote_output(
        self, uuid: str, line: str | None = None, owner_id: int | None = None
    ) -> list[str] | None:
        """`output_view` of another replica's entry (`remote`)."""
        task = await self.remote(uuid, owner_id)
        return None if task is None else slice_lines(task.output, coerce_line(line))

    # -- maintenance ---------------------------------------------------------------------------

    async def prune(self, max_age_ms: int = DEFAULT_MAX_AGE_MS, now_ms: int | None = None) -> list[str]:
        """Remove entries neither read nor changed for `max_age_ms`; returns their uuids."""
        cutoff = (self._clock() if now_ms is None else now_ms) - max_age_ms
        old = [u for u, t in self._tasks.items() if max(t.accessed_ms, t.updated_ms) < cutoff]
        for uuid in old:
            self._unindex(self._tasks.pop(uuid))
            self._dirty.discard(uuid)
            self._appended.pop(uuid, None)
            self._touched.discard(uuid)
        if old:
            await self._store.delete_tasks(old)
            log.info("Pruned %d local task entr%s", len(old), "y" if len(old) == 1 else "ies")
        return old
