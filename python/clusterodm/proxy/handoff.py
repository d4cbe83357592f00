"""Upload hand-off: an upload or commit for a session another replica holds is sent there.

Replicas behind a load balancer without stickiness each get some of a client's upload requests,
but a session's files are on the disk of the replica that answered its `init` (the store says
which, `cluster/uploads.py`). On a local miss, this replica asks the store and streams the
request, body and all, to that replica's `--replica-address`, then hands its answer back. Only
on a miss: a session this replica holds costs one dict look-up more, and nothing runs on SQLite.

The forwarded request carries `X-Clusterodm-Hop` (the sending replica's id). It grants nothing:
the receiving replica checks the token and the session's owner exactly as for any client, and
the header only stops it from sending the request on again, so no request is proxied twice or in
a loop. A client sending it only opts out of the hand-off. Requests go only to addresses the
replicas registered themselves in the store, never to one a client names, and only for the token
that opened the session (another token's request is answered here, as for an unknown task).

When the holding replica is gone (its heartbeat is dead, or it refuses the connection), its files
are gone with it: the client gets NodeODM's JSON error saying to start the upload again.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import orjson

from clusterodm.cluster.coalesce import Coalesced
from clusterodm.cluster.routing import ABSENT_MAX, ABSENT_TTL_S
from clusterodm.cluster.store import UNAVAILABLE, StoreUnavailable, UploadOwner
from clusterodm.cluster.uploads import UploadOwners, owner_alive, token_digest
from clusterodm.pipeline.api import COMMIT_WAIT_S
from clusterodm.proxy.forward import (
    ClientGone,
    Receive,
    Scope,
    Send,
    forward,
    has_request_body,
    request_headers,
    send_json,
)
from clusterodm.proxy.taskroute import TaskPath
from clusterodm.proxy.upstream import Timeouts, Upstream, UpstreamError, UpstreamGone
from clusterodm.proxy.upstream_h1 import H1Upstream

log = logging.getLogger("clusterodm.handoff")

HOP_HEADER = b"x-clusterodm-hop"
_PREFIXES = ("/task/new/upload/", "/task/new/commit/")
TIMEOUTS = Timeouts(connect_s=5.0, answer_s=COMMIT_WAIT_S + 30.0, idle_s=60.0)
"""A commit may wait `COMMIT_WAIT_S` for uploads in flight on the holder before it answers."""


def owner_gone(uuid: str) -> str:
    return (
        f"The upload of task {uuid} was held by a clusterodm replica that is gone, and its files "
        "with it. Please start the upload again (a new /task/new/init)."
    )


def no_answer(uuid: str, exc: Exception) -> str:
    return (
        f"The clusterodm replica holding the upload of task {uuid} did not answer ({exc}). Try "
        "again; if this goes on, start the upload again (a new /task/new/init)."
    )


def hopped(headers: Any) -> bool:
    """The request was already handed over by another replica (ASGI header pairs)."""
    return any(name == HOP_HEADER for name, _ in headers)


class _ClientBody:
    """The client's request body as an async iterator; `drain` reads what is left of it."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk

    async def drain(self) -> None:
        async for _ in self.chunks():
            pass


class UploadHandoff:
    """Sends other replicas' upload sessions' requests to them (PostgreSQL replicas only)."""

    def __init__(
        self, owners: UploadOwners, is_local: Callable[[str], bool], upstream: Upstream | None = None
    ) -> None:
        self._owners = owners
        self._is_local = is_local
        """Whether this replica holds the session (its pipeline has it)."""
        self._upstream = upstream or H1Upstream(TIMEOUTS)
        self._hop = (HOP_HEADER, owners.replica_id.encode())
        self._absent: dict[str, float] = {}
        """Task uuids no replica held a moment ago -> until when that answer is reused."""
        self._owner = Coalesced(owners.owner)
        """The store's answer, one query for concurrent requests about one uuid (until the first
        answer is remembered in `_absent`, a flood of requests for an unknown task would each ask)."""

    async def _holder(self, uuid: str, token: str, *, remember: bool = False) -> UploadOwner | str | None:
        """The other replica holding `uuid` for this token, an error text, or None (answer here).
        With `remember`, a uuid no replica holds is remembered as such for a few seconds."""
        if self._is_local(uuid):
            return None
        try:
            owner = await self._owner(uuid)
        except StoreUnavailable:  # the store logs the outage once
            return UNAVAILABLE
        except Exception as exc:
            log.warning("Cannot look up which replica holds upload %s: %s", uuid, exc)
            return UNAVAILABLE
        if owner is None:
            if remember:
                self._remember_absent(uuid)
            return None
        if owner.replica_id == self._owners.replica_id:
            return None
        if not hmac.compare_digest(owner.token_sha256, token_digest(token)):
            return None  # another token's session: answered here like an unknown one
        if not owner_alive(owner):
            return owner_gone(uuid)
        return owner

    async def take(self, scope: Scope, receive: Receive, send: Send, path: str, token: str) -> bool:
        """Answer an upload or commit of a session another replica holds; False: not one, answer here."""
        if not path.startswith(_PREFIXES) or hopped(scope["headers"]):
            return False
        uuid = path[len(_PREFIXES[0]) :]  # both prefixes have the same length
        holder = await self._holder(uuid, token)
        if holder is None:
            return False
        body = _ClientBody(receive) if has_request_body(scope) else None
        try:
            answer = holder if isinstance(holder, str) else await self._send(holder, uuid, scope, body)
            if isinstance(answer, str):  # read the rest, so the client gets to hear why
                if body is not None:
                    await body.drain()
                await send_json(send, {"error": answer})
                return True
        except ClientGone:
            log.info("Client went away while sending %s to another replica", path)
            return True
        status, headers, data = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return True

    async def _send(
        self, owner: UploadOwner, uuid: str, scope: Scope, body: _ClientBody | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | str:
        """Stream the request to `owner`; its answer, or the error text for the client."""
        assert owner.address is not None
        kind = "upload" if scope["path"].startswith(_PREFIXES[0]) else "commit"
        query = scope["query_string"].decode("latin-1")
        target = f"/task/new/{kind}/{uuid}" + (f"?{query}" if query else "")
        headers = [h for h in request_headers(scope) if h[0] != HOP_HEADER]
        headers.append(self._hop)
        try:
            response = await self._upstream.request(
                "POST", owner.address, target, headers, body.chunks() if body else None, small=True
            )
            try:
                data = await response.read()
            finally:
                await response.aclose()
        except UpstreamGone as exc:
            log.warning(
                "Replica %s (%s) holding upload %s is gone: %s", owner.replica_id, owner.address, uuid, exc
            )
            return owner_gone(uuid)
        except UpstreamError as exc:
            log.warning("Replica %s (%s) failed upload %s: %s", owner.replica_id, owner.address, uuid, exc)
            return no_answer(uuid, exc)
        return response.status, response.headers, data

    async def take_task(self, scope: Scope, receive: Receive, send: Send, task: TaskPath, token: str) -> bool:
        """A task request (`info`, `output`...) for a uuid no route or local entry here knows: when
        another replica still holds it (uploading, or sending it to a node), it answers; False: not so.

        Unknown uuids are remembered for a few seconds, as the route index does, so a flood of them
        reaches the database once per uuid and period."""
        if hopped(scope["headers"]) or self._absent.get(task.uuid, 0.0) > time.monotonic():
            return False
        uuid = task.uuid
        holder = await self._holder(uuid, token, remember=True)
        if holder is None:
            return False
        if isinstance(holder, str):  # gone (the leader fails the task soon), or no store
            await send_json(send, {"error": holder})
            return True
        owner = holder
        assert owner.address is not None

        async def failed(send: Send, exc: Exception) -> None:
            log.warning("Replica %s (%s) holding task %s: %s", owner.replica_id, owner.address, uuid, exc)
            gone = isinstance(exc, UpstreamGone)
            await send_json(send, {"error": owner_gone(uuid) if gone else no_answer(uuid, exc)})

        query = scope["query_string"].decode("latin-1")
        headers = [h for h in request_headers(scope) if h[0] != HOP_HEADER]
        headers.append(self._hop)
        await forward(
            scope,
            receive,
            send,
            self._upstream,
            owner.address,
            task.target + (f"?{query}" if query else ""),
            f"replica {owner.replica_id}",
            headers,
            small=task.action in ("info", "output"),
            failed=failed,
        )
        return True

    def _remember_absent(self, uuid: str) -> None:
        absent = self._absent
        absent.pop(uuid, None)
        absent[uuid] = time.monotonic() + ABSENT_TTL_S  # insertion order is expiry order
        while len(absent) > ABSENT_MAX:
            del absent[next(iter(absent))]

    async def relay_action(self, action: str, uuid: str, token: str, query: bytes) -> dict[str, Any] | None:
        """`/task/cancel`, `remove` or `restart` of a task another replica holds, sent there; None: no
        replica holds it for this token (the caller's own answer stands)."""
        holder = await self._holder(uuid, token)
        if holder is None:
            return None
        if isinstance(holder, str):
            return {"error": holder}
        assert holder.address is not None
        form = urlencode({"uuid": uuid}).encode()
        target = f"/task/{action}" + (f"?{query.decode('latin-1')}" if query else "")
        headers = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(form)).encode()),
            self._hop,
        ]

        async def once() -> AsyncIterator[bytes]:
            yield form

        try:
            response = await self._upstream.request(
                "POST", holder.address, target, headers, once(), small=True
            )
            try:
                data = await response.read()
            finally:
                await response.aclose()
            answer = orjson.loads(data)
        except (UpstreamError, orjson.JSONDecodeError) as exc:
            log.warning("Replica %s could not %s upload %s: %s", holder.replica_id, action, uuid, exc)
            return {"error": owner_gone(uuid)}
        return (
            answer if isinstance(answer, dict) else {"error": f"Unexpected answer from replica: {answer!r}"}
        )

    async def close(self) -> None:
        await self._upstream.close()
