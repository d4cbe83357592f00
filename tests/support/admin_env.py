"""A cluster of three simulator nodes with one running task, shared by the admin tests.

The task is created on the first node with PyODM and its route written into clusterodm's store
(its SQLite file, or its database when the module runs on PostgreSQL) before clusterodm starts
(as if clusterodm had forwarded it), plus one local task entry (an upload in progress), so the
admin views have both kinds of task to show.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from pyodm import Node as OdmNode

from clusterodm.cluster.routing import token_digest
from clusterodm.cluster.store import TaskRecord
from support.clusterodm import ClusterODM, open_test_store
from support.images import make_images
from support.simnode import SimNode

PASSWORD = "Correct-Horse-9"
LOCAL_TASK = "6f1b7f4e-3c1d-4d55-9b7a-2a8c4f0e9d11"


@dataclass
class Env:
    cluster: ClusterODM
    sims: list[SimNode]
    task_uuid: str
    local_uuid: str


def seed_store(data_dir: Path, sims: list[SimNode], route: tuple[str, int], local_uuid: str) -> None:
    """Write nodes, one route (to sims[route[1]]) and one local task into a fresh store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_seed(data_dir, sims, route, local_uuid))


async def _seed(data_dir: Path, sims: list[SimNode], route: tuple[str, int], local_uuid: str) -> None:
    store = await open_test_store(data_dir)
    try:
        ids = [await store.insert_node(s.host, s.port, "", False, None, i) for i, s in enumerate(sims)]
        owner = await store.owner_id(token_digest(""), create=True) or 0
        now = int(time.time() * 1000)
        await store.put_routes([(route[0], ids[route[1]], owner, now)])
        info = {
            "uuid": local_uuid,
            "name": "Upload in progress",
            "dateCreated": now - 5000,
            "processingTime": -1,
            "status": {"code": 10},
            "options": [],
            "imagesCount": 7,
            "progress": 0,
        }
        await store.put_tasks([TaskRecord(local_uuid, owner, info, ["Uploading"], now, now)])
    finally:
        await store.close()


def start_env(workdir: Path, *flags: str) -> tuple[ClusterODM, list[SimNode], str]:
    sims = [
        SimNode(workdir, "-q", "2", "--processing-seconds", "600", name="sim-a").start(),
        SimNode(workdir, "--max-images", "50", name="sim-b").start(),
        SimNode(workdir, name="sim-c").start(),
    ]
    try:
        images = make_images(workdir / "images", 4)
        task = OdmNode(sims[0].host, sims[0].port).create_task(
            images, {"fast-orthophoto": True}, name="Survey"
        )
        # Slow polling, so that only NODE UPDATE / NODE ADD explain a fresh poll in the tests.
        cluster = ClusterODM(workdir, *flags, nodes=sims, poll_interval=30)
        seed_store(cluster.data_dir, sims, (task.uuid, 0), LOCAL_TASK)
        cluster.start()
        wait_for_cli(cluster)
        return cluster, sims, task.uuid
    except BaseException:
        for sim in sims:
            sim.stop()
        raise


def wait_for_cli(cluster: ClusterODM, timeout: float = 10.0) -> None:
    """The CLI listens once the background job ran; connect until it does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((cluster.host, cluster.admin_cli_port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def random_uuid() -> str:
    return str(uuidlib.uuid4())


class Cli:
    """A raw TCP client of the admin CLI, reading up to prompts; every read is bounded."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, marker: bytes) -> bytes:
        """Bytes up to and including `marker` (AssertionError if the server closes first)."""
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed while waiting for {marker!r}; got {self.buf!r}"
            self.buf += chunk
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def greeting(self) -> str:
        head = self.read_until(b"QUIT to quit\r\n")
        while len(self.buf) < 3:  # the prompt: "#> " or "$> "
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed after the greeting {head!r}"
            self.buf += chunk
        prompt, self.buf = self.buf[:3], self.buf[3:]
        return (head + prompt).decode()

    def command(self, line: str, prompt: bytes = b"#> ") -> list[str]:
        """Send one line; the reply's lines (CRLF-terminated, prompt stripped)."""
        self.send(line.encode() + b"\r\n")
        return self.reply(prompt)

    def reply(self, prompt: bytes = b"#> ") -> list[str]:
        raw = self.read_until(prompt)
        if raw == prompt:
            return []  # a command that printed nothing (e.g. TASK OUTPUT of a silent task)
        while not raw.endswith(b"\r\n" + prompt):  # the prompt text appeared inside the reply
            raw += self.read_until(prompt)
        body = raw[: -len(prompt) - 2].decode()
        assert "\n" not in body.replace("\r\n", ""), f"bare LF in {body!r}"
        return body.split("\r\n")

    def read_to_eof(self) -> bytes:
        while chunk := self.sock.recv(65536):
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()


QUEUE_TOKEN = "queue-user-token-7f3a"
"""The token the queue env's tasks are sent with; the admin views must never show it."""


@dataclass
class QueueEnv:
    cluster: ClusterODM
    sim: SimNode
    uuids: list[str]
    """In the order sent: the first runs on the node, the others wait at the proxy."""


def start_queue_env(workdir: Path, *flags: str, tasks: int = 3) -> QueueEnv:
    """One simulator node with one slot and long tasks behind clusterodm (`--token QUEUE_TOKEN`),
    and `tasks` tasks sent through it one after the other (4, 5, 6... images): the first takes the
    slot, the others wait in the proxy's queue in the order they were sent."""
    sim = SimNode(workdir, "-q", "1", "--processing-seconds", "600", name="sim-q").start()
    cluster = ClusterODM(
        workdir, "--token", QUEUE_TOKEN, *flags, nodes=[sim], name="queue", poll_interval=0.5
    )
    try:
        cluster.start(wait_nodes=1)
        wait_for_cli(cluster)
        node = OdmNode(cluster.host, cluster.port, token=QUEUE_TOKEN)
        uuids = []
        for i in range(tasks):
            images = make_images(workdir / f"queue-images-{i}", 4 + i)
            uuids.append(node.create_task(images, name=f"queued {i}").uuid)
        return QueueEnv(cluster, sim, uuids)
    except BaseException:
        cluster.stop()
        sim.stop()
        raise
