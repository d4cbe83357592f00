"""Which routed tasks are queued or running, as far as the cluster has heard.

`maxConcurrentTasks` counts a token's queued and running tasks (spec 2.6). ClusterODM asked the
node of every route the token owns, on every init and commit, so a token with 10,000 finished
tasks paid 10,000 requests for each new one. Here the count comes from what the cluster learns
anyway: a forward handing a task to its node, a restart, every task-info answer passing through
the proxy, node webhooks and node task lists. Only tasks believed active are ever re-checked
(`stale`), so the cost follows the number of active tasks, never the number of routes.

Changes reach the store batched (within a second, and at shutdown): the proxy hears news on
every task-info answer and must not wait on the store for it. A crash can lose the last second of
news; the next info answer or activity check brings it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from clusterodm.cluster.batching import DelayedFlush
from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.store import Store, StoreError
from clusterodm.nodeodm.status import ACTIVE_STATUSES, status_code

if TYPE_CHECKING:
    from clusterodm.cluster.routing import RouteIndex

log = logging.getLogger("clusterodm.activity")

CHECK_CONCURRENCY = 16
FLUSH_DELAY_S = 1.0


class TaskActivity:
    """Routed tasks last seen queued or running, by owner id; durable through the store."""

    def __init__(self, store: Store, *, clock: Clock = now_ms) -> None:
        self._store = store
        self._clock = clock
        self._owner: dict[str, int] = {}
        self._seen: dict[int, dict[str, int]] = {}
        """owner id -> {uuid: when the task was last known to be active (ms)}."""
        self._pending: dict[str, bool] = {}
        """Changes not yet written: uuid -> active."""
        self._later = DelayedFlush(self.flush, FLUSH_DELAY_S, "task activity")

    async def load(self, owners: dict[str, int]) -> None:
        """Active tasks saved by an earlier run, with the owner of each (uuid -> owner id)."""
        now = self._clock()
        orphans = []
        for uuid in await self._store.load_active():
            owner = owners.get(uuid)
            if owner is None:
                orphans.append((uuid, False))
            else:
                self._track(uuid, owner, now)
        if orphans:
            await self._store.set_active(orphans)

    def _note(self, uuid: str, active: bool) -> None:
        self._pending[uuid] = active
        self._later.schedule()

    async def flush(self) -> None:
        """Write the changes made since the last flush (call at shutdown too)."""
        self._later.cancel()
        if self._pending:
            items, self._pending = self._pending, {}
            try:
                await self._store.set_active(items.items())
            except StoreError:
                self._pending = {**items, **self._pending}  # news heard meanwhile wins
                raise

    async def close(self) -> None:
        await self._later.wait()
        await self.flush()

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._owner

    def _track(self, uuid: str, owner: int, now: int) -> None:
        self._owner[uuid] = owner
        self._seen.setdefault(owner, {})[uuid] = now

    def active(self, uuid: str, owner: int) -> None:
        """`uuid` (owned by `owner`) is queued or running on its node."""
        known = self._owner.get(uuid)
        if known is not None and known != owner:
            self._untrack(uuid)
        self._track(uuid, owner, self._clock())
        if known is None:
            self._note(uuid, True)

    def ended(self, uuid: str) -> None:
        """`uuid` completed, failed, was cancelled, or its node no longer knows it."""
        if uuid in self._owner:
            self._untrack(uuid)
            self._note(uuid, False)

    def checked(self, uuid: str, active: bool, asked_ms: int) -> None:
        """A node's answer to a question asked at `asked_ms`. It can only confirm or end a task
        still tracked, and news that arrived while the question was out (a poll through the
        proxy, a restart) wins over it."""
        owner = self._owner.get(uuid)
        if owner is None or self._seen[owner][uuid] > asked_ms:
            return
        if active:
            self._seen[owner][uuid] = self._clock()
        else:
            self.ended(uuid)

    def forget(self, uuids: Iterable[str]) -> None:
        """Routes that are gone (their store rows went with the routes)."""
        for uuid in uuids:
            self._pending.pop(uuid, None)
            if uuid in self._owner:
                self._untrack(uuid)

    def _untrack(self, uuid: str) -> None:
        owner = self._owner.pop(uuid)
        seen = self._seen[owner]
        del seen[uuid]
        if not seen:
            del self._seen[owner]

    def of_owner(self, owner: int) -> list[str]:
        return list(self._seen.get(owner, ()))

    def stale(self, seen_before_ms: int) -> list[str]:
        """Active tasks with no news since `seen_before_ms`: worth asking their node about."""
        return [u for seen in self._seen.values() for u, ms in seen.items() if ms < seen_before_ms]


class ActivityCheck:
    """Asks nodes about tasks believed active that had no news for `interval_s` (one request per
    such task), so a task nobody polls still frees its owner's slot when it ends."""

    def __init__(self, routes: RouteIndex, client: NodeClient, interval_s: float) -> None:
        self._routes = routes
        self._client = client
        self.interval_s = interval_s

    async def check(self, now: int | None = None) -> int:
        """One round; returns how many tasks were asked about."""
        now = now_ms() if now is None else now
        stale = self._routes.activity.stale(now - int(self.interval_s * 1000))
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def ask(uuid: str) -> None:
            route = self._routes.peek(uuid)
            if route is None:
                return
            activity = self._routes.activity
            async with gate:
                asked = now_ms()
                try:
                    info = await self._client.task_info(route.node, uuid)
                except NodeError as exc:
                    if exc.reason.endswith("not found"):  # the node answered: it has no such task
                        activity.checked(uuid, False, asked)
                    return
            code = status_code(info)
            if code is not None:
                activity.checked(uuid, code in ACTIVE_STATUSES, asked)

        await asyncio.gather(*(ask(uuid) for uuid in stale))
        return len(stale)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("Checking active tasks failed; retrying in %g s", self.interval_s)
