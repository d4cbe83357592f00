"""`GET /healthz` and `GET /readyz`: answered by the front before the token check and before any
routing, in probe conventions (200 / 503 with a JSON body), and readiness follows the store.

In-process over ASGI with a real `Cluster` (SQLite store); a store that fails or hangs stands in
for PostgreSQL trouble where only the probe's own reaction is under test. The process-level check
(every replica of a PostgreSQL cluster answers, one leads) is in tests/test_replicas_nginx.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from clusterodm.cluster.store import ReplicaRecord
from clusterodm.config import Config
from clusterodm.proxy.probes import Probes
from clusterodm.services import Cluster


class Recorder:
    """The app behind the front: fails the test if a probe reaches it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        self.paths.append(str(scope["path"]))
        raise AssertionError(f"{scope['path']} went past the front")


def test_probes_need_no_token_and_readiness_waits_for_the_heartbeat(tmp_path: Path) -> None:
    async def main() -> None:
        cluster = await Cluster.open(Config(data_dir=tmp_path / "data", token="abc"))
        try:
            transport = httpx.ASGITransport(app=cluster.proxy_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
                live = await client.get("/healthz")
                expected = {"status": "ok", "replica": cluster.replica.id}
                assert (live.status_code, live.json()) == (200, expected)
                assert live.headers["content-type"] == "application/json"

                # The background jobs have not run: no heartbeat written, so not ready yet.
                before = await client.get("/readyz")
                assert before.status_code == 503
                assert before.json()["status"] == "not ready"
                assert "not registered" in before.json()["error"]

                await cluster.replica.beat()  # what the replica's job does every 2 s
                await asyncio.sleep(1.05)  # past the reuse of the last answer
                ready = await client.get("/readyz")
                assert (ready.status_code, ready.json()) == (
                    200,
                    {"status": "ready", "replica": cluster.replica.id, "leader": True, "replicas": 1},
                )

                # Other methods and near-miss paths are ordinary routes (token first).
                assert (await client.post("/healthz")).status_code == 401
                assert (await client.get("/healthz/")).status_code == 401
                assert (await client.get("/HEALTHZ")).status_code == 401
        finally:
            await cluster.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_probes_never_reach_the_app_or_a_node(tmp_path: Path) -> None:

    async def main() -> None:
        cluster = await Cluster.open(Config(data_dir=tmp_path / "data"))
        try:
            recorder = Recorder()
            front = cluster.proxy_front(recorder, recorder)
            transport = httpx.ASGITransport(app=front)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
                for path in ("/healthz", "/readyz", "/healthz?token=x"):
                    assert (await client.get(path)).status_code in (200, 503), path
            assert recorder.paths == []
            counts = cluster.metrics.requests.counts
            assert counts.get(("probe", 200)) == 2 and counts.get(("probe", 503)) == 1
        finally:
            await cluster.close()

    asyncio.run(asyncio.wait_for(main(), 10))


class FakeReplica:
    id = "r1"
    leading = False


class Store:
    """A store whose replica listing answers, fails or hangs, and counts its reads."""

    def __init__(self, mode: str = "ok", records: list[ReplicaRecord] | None = None) -> None:
        self.mode = mode
        self.reads = 0
        self.records = records if records is not None else [ReplicaRecord("r1", "http://a", 0, 100, False)]

    async def load_replicas(self) -> list[ReplicaRecord]:
        self.reads += 1
        if self.mode == "fail":
            raise ConnectionError("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(30)
        await asyncio.sleep(0.01)
        return self.records


@pytest.mark.parametrize(
    ("mode", "records", "error"),
    [
        ("fail", None, "state store unavailable: connection refused"),
        ("hang", None, "state store unavailable: no answer within 0.2 s"),
        ("ok", [ReplicaRecord("r1", "http://a", 0, 10_500, False)], "not registered"),
        ("ok", [ReplicaRecord("r2", "http://b", 0, 100, True)], "not registered"),
    ],
)
def test_not_ready_says_why(mode: str, records: list[ReplicaRecord] | None, error: str) -> None:
    probes = Probes(Store(mode, records), FakeReplica(), timeout_s=0.2)
    status, body = asyncio.run(asyncio.wait_for(probes.readiness(), 5))
    assert status == 503
    assert body["status"] == "not ready" and error in body["error"], body


def test_a_flood_of_probes_reads_the_store_once() -> None:
    store = Store()
    others = ReplicaRecord("r2", "http://b", 0, 100, True)
    store.records = [*store.records, others, ReplicaRecord("r3", "http://c", 0, 60_000, False)]
    probes = Probes(store, FakeReplica())

    async def flood() -> list[tuple[int, dict[str, object]]]:
        return await asyncio.gather(*(probes.readiness() for _ in range(200)))

    answers = asyncio.run(asyncio.wait_for(flood(), 5))
    assert store.reads == 1
    assert {a[0] for a in answers} == {200}
    assert answers[0][1] == {"status": "ready", "replica": "r1", "leader": False, "replicas": 2}
