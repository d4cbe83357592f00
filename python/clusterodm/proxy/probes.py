"""`GET /healthz` and `GET /readyz` on the API port: what a load balancer or Kubernetes asks.

Several replicas behind a load balancer need two answers a NodeODM route cannot give: is this
process alive (liveness: restart it if not), and should requests be sent to it (readiness: the
state store answers and this replica is registered among the live ones). Both are answered before
the token check and never reach a node. Unlike the NodeODM routes (errors are HTTP 200), a probe
speaks in status codes, as probes read them: 200 when fine, 503 when not, with a JSON body saying
why. Readiness reads the store; concurrent probes share one read, and its answer is reused for
`REUSE_S`, so a flood of probes costs the database at most one query per second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import orjson

from clusterodm.cluster.replicas import DEAD_AFTER_MS
from clusterodm.cluster.store import ReplicaRecord
from clusterodm.proxy.forward import Send

PATHS = ("/healthz", "/readyz")
"""The probe paths, matched exactly (no token, any host)."""
STORE_TIMEOUT_S = 2.0
"""A store slower than this to list the replicas makes the replica not ready."""
REUSE_S = 1.0
"""How long one readiness answer serves the probes that follow it."""

_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class ReplicaStore(Protocol):
    """What readiness reads: the registered replicas."""

    async def load_replicas(self) -> list[ReplicaRecord]: ...


class ThisReplica(Protocol):
    """This process as a replica: its id, and whether it leads."""

    id: str
    leading: bool


class Probes:
    """Answers the two probe paths for one replica."""

    def __init__(
        self, store: ReplicaStore, replica: ThisReplica, *, timeout_s: float = STORE_TIMEOUT_S
    ) -> None:
        self._store = store
        self._replica = replica
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._last: tuple[float, int, dict[str, Any]] | None = None
        """(monotonic time, status, body) of the last readiness check."""

    async def answer(self, path: str, send: Send) -> None:
        """Answer `path` (one of `PATHS`)."""
        if path == "/healthz":
            await _send(send, 200, {"status": "ok", "replica": self._replica.id})
        else:
            status, body = await self.readiness()
            await _send(send, status, body)

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 when the store answers and lists this replica alive, else 503."""
        async with self._lock:  # probes arriving together wait for one read
            last = self._last
            if last is not None and time.monotonic() - last[0] < REUSE_S:
                return last[1], last[2]
            status, body = await self._check()
            self._last = (time.monotonic(), status, body)
            return status, body

    async def _check(self) -> tuple[int, dict[str, Any]]:
        replica_id = self._replica.id
        try:
            records = await asyncio.wait_for(self._store.load_replicas(), self._timeout_s)
        except TimeoutError:
            why = f"state store unavailable: no answer within {self._timeout_s:g} s"
            return 503, _not_ready(replica_id, why)
        except Exception as exc:
            return 503, _not_ready(replica_id, f"state store unavailable: {exc}".strip())
        alive = [r for r in records if r.heartbeat_age_ms <= DEAD_AFTER_MS]
        if not any(r.id == replica_id for r in alive):
            why = "this replica is not registered yet (no recent heartbeat in the state store)"
            return 503, _not_ready(replica_id, why)
        leader = self._replica.leading
        return 200, {"status": "ready", "replica": replica_id, "leader": leader, "replicas": len(alive)}


def _not_ready(replica_id: str, why: str) -> dict[str, Any]:
    return {"status": "not ready", "replica": replica_id, "error": why}


async def _send(send: Send, status: int, body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    headers = [*_HEADERS, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
