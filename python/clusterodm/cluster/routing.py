"""Which node holds which task, and who owns it.

The hot lookups live in the native `RouteTable` (uuid as u128, node and owner as small ints);
the store holds the durable copy, written through on insert/remove. Access times are refreshed in
memory on every lookup and persisted in bulk by `flush()` (they only matter for pruning, so
losing the last minutes of them in a crash is harmless).

Owners are small integers standing for a user token; the store keeps only the token's SHA-256,
and 0 means "no token". Every owner is loaded at start, so reads never wait on the store for one;
only a token's first task creates its id. ClusterODM lets any token act on any uuid (spec 8.20); `lookup` with
`enforce_owner=True` answers a foreign task as if it did not exist.

On a shared store (PostgreSQL replicas) the table is a cache of the database: routes and owners
other replicas create or remove arrive as change notices, and a lookup that misses asks the store
(`fetch`). Misses are remembered for a few seconds (a bounded negative cache), so a flood of
unknown uuids reaches the database once per uuid and period, not once per request.

While the database is unavailable, cached routes are served as usual; what cannot wait raises
`StoreUnavailable` before changing anything (`ensure_writable`), and what can (access times, the
deletion of a route whose task the node already removed) is kept and written by a later flush.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orjson

from clusterodm.cluster.activity import TaskActivity
from clusterodm.cluster.clock import Clock, now_ms
from clusterodm.cluster.coalesce import Coalesced
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.store import RouteRecord, Store, StoreError, StoreUnavailable
from clusterodm.cluster.timeline import StatusTimeline
from clusterodm.nodeodm.status import ACTIVE_STATUSES

if TYPE_CHECKING:
    from clusterodm._native import RouteTable

log = logging.getLogger("clusterodm.routing")

DAY_MS = 86_400_000
NO_OWNER = -1
"""An owner id no task has: what a token that never created anything owns."""
DEFAULT_MAX_AGE_MS = 30 * DAY_MS
ABSENT_TTL_S = 3.0
"""How long a uuid the store did not know (or that was just removed) is answered without asking."""
ABSENT_MAX = 10_000
"""Bound of the negative cache; the oldest entries go first."""


class Route(NamedTuple):
    """A route-table entry (owner as its integer id; the token itself is not kept)."""

    uuid: str
    node: Node
    owner_id: int
    accessed_ms: int


def _read_routes_json(path: Path) -> object | None:
    """ClusterODM's routes.json parsed, or None when absent or unreadable (logged)."""
    if not path.exists():
        return None
    try:
        return orjson.loads(path.read_bytes())
    except (orjson.JSONDecodeError, OSError) as exc:
        log.error("Cannot import %s (%s); fix or delete the file", path, exc)
        return None


def token_digest(token: str) -> bytes:
    """SHA-256 of a user token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode()).digest()


class RouteIndex:
    """Route table facade: native lookups, durable store, owner ids.

    Create with `await RouteIndex.open(...)`, which loads the stored routes and owners.
    """

    def __init__(
        self, store: Store, table: RouteTable, registry: NodeRegistry, *, clock: Clock = now_ms
    ) -> None:
        self._store = store
        self._table = table
        self._registry = registry
        self._clock = clock
        self._owners: dict[str, int] = {"": 0}
        """token -> owner id, for tokens seen since the start."""
        self._digests: dict[bytes, int] = {}
        """token SHA-256 -> owner id, for every owner in the store."""
        self._dirty: set[str] = set()
        self._unremoved: set[str] = set()
        """Routes removed here whose deletion the store could not take yet (written by `flush`)."""
        self.shared = store.shared
        """The store is shared with other replicas: a miss asks it (`fetch`)."""
        self._absent: dict[str, float] = {}
        """uuid -> monotonic expiry: not in the store when last asked, or removed meanwhile."""
        self._read_route = Coalesced(store.get_route)
        """Store reads, one query for concurrent misses of one uuid."""
        self.activity = TaskActivity(store, clock=clock)
        """Which of these tasks are queued or running (for `maxConcurrentTasks`)."""
        self.timeline = StatusTimeline(clock=clock)
        """Status changes heard of (the admin web's task detail view)."""
        self.on_task_ended: Callable[[Node], None] | None = None
        """Told when a task last seen queued or running on a node is heard to have ended (a slot
        may be free there: the proxy queue looks at once)."""
        registry.set_route_dropper(self._drop_node)

    @classmethod
    async def open(
        cls, store: Store, table: RouteTable, registry: NodeRegistry, *, clock: Clock = now_ms
    ) -> RouteIndex:
        index = cls(store, table, registry, clock=clock)
        await index._load()
        return index

    async def _load(self) -> None:
        self._digests = dict(await self._store.load_owners())
        entries = await self._store.load_routes()
        known = [e for e in entries if self._registry.get(e[1]) is not None]
        if len(known) != len(entries) and not self.shared:
            # On a shared store the node may be one another replica added a moment ago: kept there.
            orphans = [e[0] for e in entries if self._registry.get(e[1]) is None]
            log.warning("Dropping %d route(s) whose node is no longer registered", len(orphans))
            await self._store.delete_routes(orphans)
        self._table.reserve(len(known))
        self._table.load(known)
        await self.activity.load({e[0]: e[2] for e in known})

    # -- news from other replicas (shared store) ----------------------------------------------------

    def routes_added(self, records: list[RouteRecord]) -> None:
        """Routes another replica created or moved (a node it does not know yet is left to `fetch`)."""
        for uuid, node_id, owner, accessed in records:
            self._absent.pop(uuid, None)
            if self._registry.get(node_id) is not None:
                self._table.insert(uuid, node_id, owner, accessed)

    def routes_removed(self, uuids: list[str]) -> None:
        """Routes another replica removed: forgotten here with their status history, and not read
        back for a few seconds."""
        now = time.monotonic()
        for uuid in uuids:
            try:
                self._table.remove(uuid)
            except ValueError:
                continue
            self._dirty.discard(uuid)
            self._remember_absent(uuid, now)
        self.activity.forget(uuids)
        self.timeline.forget(uuids)

    def owner_added(self, digest: bytes, owner_id: int) -> None:
        self._digests[digest] = owner_id

    async def resync(self) -> None:
        """Make the table match the store again (after change notices may have been missed)."""
        self._digests.update(await self._store.load_owners())
        stored = {r[0]: r for r in await self._store.load_routes()}
        gone = [uuid for uuid, *_ in self._table.export() if uuid not in stored]
        self.routes_removed(gone)
        self.routes_added([r for uuid, r in stored.items() if uuid not in self._table])
        self._absent.clear()
        if gone:
            log.info("Forgot %d route(s) other replicas removed while their notices were missed", len(gone))

    def _remember_absent(self, uuid: str, now: float) -> None:
        """Not to be read from the store again for `ABSENT_TTL_S` (monotonic `now`)."""
        absent = self._absent
        absent.pop(uuid, None)
        absent[uuid] = now + ABSENT_TTL_S  # insertion order is expiry order
        # Expired entries go from the front, so a steady stream of removals keeps a few seconds'
        # worth here instead of growing to the cap.
        while absent:
            oldest = next(iter(absent))
            if len(absent) <= ABSENT_MAX and absent[oldest] > now:
                break
            del absent[oldest]

    async def fetch(self, uuid: str, token: str | None, *, enforce_owner: bool) -> Node | None:
        """`lookup` for a uuid the table missed: ask the shared store (None on a SQLite store).

        The store is asked at most once per uuid every `ABSENT_TTL_S` while it does not know it,
        and concurrent misses of one uuid share one query.
        """
        if not self.shared:
            return None
        if uuid not in self._table:
            now = time.monotonic()
            expiry = self._absent.get(uuid)
            if expiry is not None:
                if expiry > now:
                    return None
                del self._absent[uuid]
            try:
                self._table.peek(uuid)
            except ValueError:
                return None  # malformed: no store could know it
            record = await self._read_route(uuid)
            if uuid in self._absent:  # removed while the store was being read
                return None
            if record is None or self._registry.get(record[1]) is None:
                self._remember_absent(uuid, time.monotonic())
                return None
            if uuid not in self._table:
                self._table.insert(*record)
        if enforce_owner and self.known_owner_id(token) is None:
            # A token whose first task another replica created a moment ago (its notice is on the way).
            owner = await self._store.owner_id(token_digest(token or ""), create=False)
            if owner is not None:
                self._digests[token_digest(token or "")] = owner
        return self.lookup(uuid, token, enforce_owner=enforce_owner)

    def _drop_node(self, node_id: int) -> list[str]:
        uuids = self._table.remove_node(node_id)
        self._dirty.difference_update(uuids)
        self.activity.forget(uuids)
        return uuids

    def ensure_writable(self) -> None:
        """`StoreUnavailable` while the store is known not to answer: check before a change that
        must reach it, so nothing is done half-way (a task removed on its node, its route kept)."""
        if not self._store.available:
            raise StoreUnavailable("the state store does not answer")

    # -- owners ----------------------------------------------------------------------------------

    async def owner_id(self, token: str | None) -> int:
        """Owner id for a token, created on first use; 0 for no/empty token."""
        owner = self.known_owner_id(token)
        if owner is not None:
            return owner
        token = token or ""
        digest = token_digest(token)
        created = await self._store.owner_id(digest, create=True)
        assert created is not None
        self._digests[digest] = created
        self._owners[token] = created
        return created

    def known_owner_id(self, token: str | None) -> int | None:
        """Owner id without creating one (a token that never created anything owns nothing)."""
        token = token or ""
        cached = self._owners.get(token)
        if cached is not None:
            return cached
        owner = self._digests.get(token_digest(token))
        if owner is not None:
            self._owners[token] = owner
        return owner

    # -- routes ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._table

    async def add(self, uuid: str, node: Node, token: str | None) -> None:
        """Route `uuid` to `node` for the owner of `token` (ValueError on a malformed uuid)."""
        owner = await self.owner_id(token)
        now = self._clock()
        self._table.insert(uuid, node.id, owner, now)
        self._dirty.discard(uuid)
        self._absent.pop(uuid, None)
        await self._store.put_routes([(uuid, node.id, owner, now)])

    def lookup(self, uuid: str, token: str | None, *, enforce_owner: bool) -> Node | None:
        """Node serving `uuid` (refreshes its access time); None if unknown or owned by someone else.

        `enforce_owner` is for deployments with user tokens: a task of another token is answered
        exactly like an unknown one, so uuids cannot be probed. Its access time is not refreshed.
        """
        try:
            if enforce_owner:
                peeked = self._table.peek(uuid)
                if peeked is None or peeked[1] != self.known_owner_id(token):
                    return None
            entry = self._table.get(uuid, self._clock())
        except ValueError:
            return None
        if entry is None:
            return None
        self._dirty.add(uuid)
        return self._registry.get(entry[0])

    def _peek(self, uuid: str) -> tuple[int, int, int] | None:
        try:
            return self._table.peek(uuid)
        except ValueError:
            return None

    def peek(self, uuid: str) -> Route | None:
        """Route entry without refreshing its access time (admin views)."""
        entry = self._peek(uuid)
        if entry is None:
            return None
        node = self._registry.get(entry[0])
        return None if node is None else Route(uuid, node, entry[1], entry[2])

    async def remove(self, uuid: str, *, keep_history: bool = False) -> bool:
        """Forget a task's route (and, unless `keep_history`, its status timeline: a task removed
        for good cannot be looked at any more); whether it was known."""
        try:
            removed = self._table.remove(uuid)
        except ValueError:
            return False
        if self.shared:  # a read of it in flight must not bring it back
            self._remember_absent(uuid, time.monotonic())
        if removed:
            self._dirty.discard(uuid)
            self.activity.forget([uuid])
            if not keep_history:
                self.timeline.forget([uuid])
            try:
                await self._store.delete_routes([uuid])
            except StoreUnavailable:
                self._unremoved.add(uuid)  # gone here and on its node: the store hears it later
        return removed

    def observe_status(self, uuid: str, code: int | None) -> None:
        """News of a routed task's status code (an info answer, a webhook, a forward, a restart)."""
        if code is None:
            return
        entry = self._peek(uuid)
        ended = False
        if code in ACTIVE_STATUSES:
            if entry is not None:
                self.activity.active(uuid, entry[1])
        else:
            ended = uuid in self.activity
            self.activity.ended(uuid)
        node = self._registry.get(entry[0]) if entry is not None else None
        if node is not None:
            self.timeline.observe(uuid, code, node.name)
            if ended and self.on_task_ended is not None:
                self.on_task_ended(node)

    def active_for(self, owner_id: int) -> list[str]:
        """Routed tasks of `owner_id` last seen queued or running."""
        return self.activity.of_owner(owner_id)

    def for_owner(self, token: str | None) -> list[str]:
        owner = self.known_owner_id(token)
        return [] if owner is None else self._table.by_owner(owner)

    def for_node(self, node: Node) -> list[str]:
        return self._table.by_node(node.id)

    def entries(self) -> list[Route]:
        """Every route (admin ROUTE LIST); skips entries of nodes removed meanwhile."""
        out = []
        for uuid, node_id, owner, accessed in self._table.export():
            node = self._registry.get(node_id)
            if node is not None:
                out.append(Route(uuid, node, owner, accessed))
        return out

    async def flush(self) -> int:
        """Persist access times refreshed since the last flush (and activity news); returns how
        many access times were written."""
        await self.activity.flush()
        if self._unremoved:
            unremoved, self._unremoved = self._unremoved, set()
            try:
                await self._store.delete_routes(unremoved)
            except StoreError:
                self._unremoved |= unremoved
                raise
        if not self._dirty:
            return 0
        items = []
        for uuid in self._dirty:
            entry = self._peek(uuid)
            if entry is not None:
                items.append((uuid, entry[2]))
        dirty, self._dirty = self._dirty, set()
        try:
            await self._store.touch_routes(items)
        except StoreError:
            self._dirty |= dirty  # written by the next flush
            raise
        return len(items)

    async def close(self) -> None:
        """Shutdown: write what is batched."""
        await self.activity.close()
        await self.flush()

    async def stale(self, max_age_ms: int = DEFAULT_MAX_AGE_MS, now_ms: int | None = None) -> list[str]:
        """Routes not accessed for `max_age_ms`, left in place (for a liveness check before `prune`)."""
        now = self._clock() if now_ms is None else now_ms
        await self.flush()
        return await self._store.stale_routes(now - max_age_ms)

    async def prune(
        self,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        is_live: Callable[[str], bool] | None = None,
        now_ms: int | None = None,
    ) -> list[str]:
        """Drop routes not accessed for `max_age_ms`, except those `is_live` says still run."""
        now = self._clock() if now_ms is None else now_ms
        await self.flush()  # so the store agrees with the table about what is old
        expired = self._table.expire(now - max_age_ms)
        removed: list[str] = []
        kept: list[RouteRecord] = []
        for uuid in expired:
            record = await self._store.get_route(uuid)
            if record is not None and is_live is not None and is_live(uuid):
                kept.append((uuid, record[1], record[2], now))
            else:
                removed.append(uuid)
        for uuid, node_id, owner, accessed in kept:
            self._table.insert(uuid, node_id, owner, accessed)
        if kept:
            await self._store.put_routes(kept)
        self.activity.forget(removed)
        await self._store.delete_routes(removed)
        if removed:
            log.info("Pruned %d route(s) not accessed for %d days", len(removed), max_age_ms // DAY_MS)
        return removed

    async def import_clusterodm_routes(self, routes_json_path: str | os.PathLike[str]) -> int:
        """One-time import of ClusterODM's data/routes.json; renames it to routes.json.imported.

        Routes whose node is not registered (or with malformed uuids) are dropped, as ClusterODM
        does on load. Returns how many routes were imported.
        """
        path = Path(routes_json_path)
        raw = _read_routes_json(path)
        if raw is None:
            return 0
        records: list[RouteRecord] = []
        dropped = 0
        now = self._clock()
        for uuid, entry in raw.items() if isinstance(raw, dict) else ():
            node_json = entry.get("node") if isinstance(entry, dict) else None
            if not isinstance(node_json, dict) or not isinstance(node_json.get("hostname"), str):
                dropped += 1
                continue
            node = self._registry.find(node_json["hostname"], node_json.get("port", ""))
            if node is None or uuid in self._table:
                dropped += 1
                continue
            token = entry.get("token")
            owner = await self.owner_id(token if isinstance(token, str) else None)
            accessed = entry.get("accessed")
            accessed_ms = int(accessed) if isinstance(accessed, int | float) and accessed > 0 else now
            try:
                self._table.insert(uuid, node.id, owner, accessed_ms)
            except ValueError:
                dropped += 1
                continue
            records.append((uuid, node.id, owner, accessed_ms))
        await self._store.put_routes(records)
        os.replace(path, path.with_name(path.name + ".imported"))
        log.info("Imported %d route(s) from %s (%d dropped)", len(records), path, dropped)
        return len(records)
