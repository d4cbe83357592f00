"""Upload hand-off between two clusterodm replicas on one PostgreSQL database.

An upload session lives on the disk of the replica that answered its `init`; an `upload` or
`commit` reaching the other replica is streamed to it. The task then completes on the node with
every file byte for byte. A killed holder gets its clients a clear JSON error, in bounded time,
saying to start again, and the leader forgets its sessions. The hop header the replicas use gives
a client nothing: the token is checked on both sides.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pyodm import Node

from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.procs import free_port, start_process, stop_process, wait_http
from support.simnode import SimNode
from support.waiting import wait_until

TOKEN = "s3cret"
HOP = "X-Clusterodm-Hop"
GONE_ANSWER_S = 5.0
"""Longest a client may wait for the error once the replica holding its upload was killed."""
STALL_NODE = Path(__file__).parent / "pipeline" / "stallnode.py"
CLEANUP_S = 25.0
"""Dead after 10 s without a heartbeat, then the leader's next cleanup round (and a margin)."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimNode]:
    with SimNode(tmp_path, "--processing-seconds", "0.3", "--asset-size", "2048") as node:
        yield node


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer, sim: SimNode) -> Iterator[tuple[ClusterODM, ClusterODM]]:
    """Replicas A and B on one fresh database, both asking clients for `TOKEN`."""
    url = postgres.database()
    flags = ("--db", url, "--token", TOKEN)
    with ClusterODM(tmp_path, *flags, nodes=[sim], name="a").start(wait_nodes=1) as a:
        with ClusterODM(tmp_path, *flags, nodes=[sim], name="b").start(wait_nodes=1) as b:
            yield a, b


def db_url(cluster: ClusterODM) -> str:
    return cluster.flags[cluster.flags.index("--db") + 1]


def post(cluster: ClusterODM, path: str, token: str = TOKEN, **kwargs: Any) -> Any:
    reply = httpx.post(
        f"{cluster.url}{path}", params={"token": token} if token else None, timeout=30, **kwargs
    )
    return reply.json() if reply.status_code == 200 else reply.status_code


def files_of(paths: list[str]) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in paths}


def node_images(node: SimNode, uuid: str) -> dict[str, bytes]:
    folder = node.data_dir / "tasks" / uuid / "images"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def completed(cluster: ClusterODM, uuid: str) -> dict[str, Any]:
    """The task's info once COMPLETED, read through `cluster`."""
    task = Node(cluster.host, cluster.port, token=TOKEN).get_task(uuid)
    task.wait_for_completion(interval=0.1)
    info = httpx.get(f"{cluster.url}/task/{uuid}/info", params={"token": TOKEN}).json()
    assert info["status"]["code"] == 40, info
    return dict(info)


def session_rows(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT uuid, replica_id FROM upload_sessions")]


def test_init_on_one_replica_upload_and_commit_through_the_other(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    a, b = pair
    images = files_of(make_images(tmp_path / "images", 5, size=300_000))
    uuid = post(a, "/task/new/init", data={"name": "handed over"})["uuid"]
    names = sorted(images)
    # One request with two files, then one file per request: all through B, which holds nothing.
    two = [("images", (n, images[n], "image/jpeg")) for n in names[:2]]
    assert post(b, f"/task/new/upload/{uuid}", files=two) == {"success": True}
    for name in names[2:]:
        assert post(b, f"/task/new/upload/{uuid}", files={"images": (name, images[name])}) == {
            "success": True
        }
    assert not (b.tmp_dir / uuid).exists()  # the files went to A's disk, not B's
    assert sorted(p.name for p in (a.tmp_dir / uuid / "files").iterdir()) == names

    # The hop header is no way around the token: B still asks for it, and so does A.
    assert post(b, f"/task/new/commit/{uuid}", token="", headers={HOP: "x"}) == 401
    assert post(a, f"/task/new/commit/{uuid}", token="wrong", headers={HOP: "x"}) == 401
    # With it a client only opts out of the hand-off: B answers for itself (it has no such session).
    assert "error" in post(b, f"/task/new/commit/{uuid}", headers={HOP: "x"})

    assert post(b, f"/task/new/commit/{uuid}") == {"uuid": uuid}
    info = completed(b, uuid)
    assert info["imagesCount"] == len(images)
    assert node_images(sim, uuid) == images  # byte for byte
    wait_until(lambda: not session_rows(db_url(a)), 5, "the forwarded session released")


def test_pyodm_uploads_through_alternating_replicas(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    """PyODM's own create_task (init, parallel one-file uploads, commit), each request going to the
    other replica than the one before, as a round-robin load balancer sends them."""
    a, b = pair

    class RoundRobin(Node):  # type: ignore[misc]
        turn = 0

        def url(self, url: str, query: dict[str, str] | None = None) -> str:
            RoundRobin.turn += 1
            self.port = (a, b)[RoundRobin.turn % 2].port
            return str(super().url(url, {} if query is None else query))

    paths = make_images(tmp_path / "images", 12)
    task = RoundRobin(a.host, a.port, token=TOKEN).create_task(paths, name="round robin", max_retries=0)
    uuid = str(task.uuid)
    info = completed(a, uuid)
    assert info["imagesCount"] == len(paths)
    assert node_images(sim, uuid) == files_of(paths)
    assert RoundRobin.turn >= len(paths) + 2


def test_a_killed_holder_gets_its_clients_a_clear_error_and_the_leader_forgets_it(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM]
) -> None:
    a, b = pair
    url = db_url(a)
    images = files_of(make_images(tmp_path / "images", 2))
    first, second = sorted(images)
    uuid = post(a, "/task/new/init")["uuid"]
    assert post(b, f"/task/new/upload/{uuid}", files={"images": (first, images[first])}) == {"success": True}
    holder = [replica for u, replica in session_rows(url) if u == uuid]
    assert len(holder) == 1

    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(10)

    started = time.monotonic()
    answer = post(b, f"/task/new/upload/{uuid}", files={"images": (second, images[second])})
    assert "start the upload again" in answer["error"], answer
    answer = post(b, f"/task/new/commit/{uuid}")
    assert "start the upload again" in answer["error"], answer
    assert time.monotonic() - started < GONE_ANSWER_S
    assert not (b.tmp_dir / uuid).exists()

    # B leads once A's lock is gone, and forgets A's sessions once A counts as dead.
    wait_until(lambda: uuid not in dict(session_rows(url)), CLEANUP_S, "the dead holder's session forgotten")
    assert f"upload session(s) of replica {holder[0]}" in b.log()
    answer = post(b, f"/task/new/upload/{uuid}", files={"images": (second, images[second])})
    assert "error" in answer  # an unknown task now
    assert post(b, "/task/new/init")["uuid"]  # a new upload works


def test_restart_and_cancel_of_an_upload_held_by_the_other_replica(
    pair: tuple[ClusterODM, ClusterODM],
) -> None:
    a, b = pair
    uuid = post(a, "/task/new/init")["uuid"]
    not_supported = {"error": "Action not supported. Please create a new task."}  # as A answers it
    assert post(b, "/task/restart", data={"uuid": uuid}) == not_supported
    assert post(b, "/task/cancel", data={"uuid": uuid}) == {"success": True}
    wait_until(lambda: not (a.tmp_dir / uuid).exists(), 5, "the session dropped on A")
    assert "error" in post(b, f"/task/new/commit/{uuid}")


def test_a_restarted_holder_takes_its_sessions_back(
    tmp_path: Path, pair: tuple[ClusterODM, ClusterODM], sim: SimNode
) -> None:
    """A restart gives the replica a new id; the sessions on its disk are held under it again, so
    the other replica finds them (else it would take them for a gone replica's)."""
    a, b = pair
    images = files_of(make_images(tmp_path / "images", 2))
    first, second = sorted(images)
    uuid = post(a, "/task/new/init")["uuid"]
    assert post(b, f"/task/new/upload/{uuid}", files={"images": (first, images[first])}) == {"success": True}
    before = dict(session_rows(db_url(a)))[uuid]
    a.stop()
    a.start(wait_nodes=1)
    wait_until(lambda: dict(session_rows(db_url(a))).get(uuid) not in (None, before), 10, "session adopted")
    answer = post(b, f"/task/new/upload/{uuid}", files={"images": (second, images[second])})
    assert answer == {"success": True}
    assert post(b, f"/task/new/commit/{uuid}") == {"uuid": uuid}
    assert completed(b, uuid)["imagesCount"] == 2
    assert node_images(sim, uuid) == images


def test_a_holder_killed_during_an_upload_request_gets_the_client_the_error(
    pair: tuple[ClusterODM, ClusterODM],
) -> None:
    """The request is streaming through B to A when A dies: B reads the rest of the body and
    answers the JSON error (the client is not left hanging, nor cut off without a word)."""
    a, b = pair
    uuid = post(a, "/task/new/init")["uuid"]
    assert a.proc is not None
    pid = a.proc.pid
    boundary = "h4ndoff"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="IMG_0001.JPG"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head + b"\xff\xd8" + b"x" * 65536
        os.killpg(pid, signal.SIGKILL)  # A had the first part; the rest finds it gone
        for _ in range(64):
            yield b"y" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    started = time.monotonic()
    reply = httpx.post(
        f"{b.url}/task/new/upload/{uuid}",
        params={"token": TOKEN},
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert "start the upload again" in reply.json()["error"], reply.text
    assert time.monotonic() - started < GONE_ANSWER_S
    a.proc.wait(10)


def test_a_task_its_gone_replica_was_sending_to_a_node_fails_saying_why(
    tmp_path: Path, postgres: PostgresServer, sim: SimNode
) -> None:
    """Committed on A, stuck on its way to a node (one that never reads an upload), then A is
    killed: the leader fails the task, so no replica shows it launching forever."""
    port = free_port()
    stall = start_process([sys.executable, str(STALL_NODE), str(port), sim.url], tmp_path / "stall.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/info", timeout=10, proc=stall, log_path=tmp_path / "stall.log")
        flags = ("--db", postgres.database(), "--token", TOKEN)
        node = [("127.0.0.1", port, "")]
        with ClusterODM(tmp_path, *flags, nodes=node, name="a").start(wait_nodes=1) as a:
            with ClusterODM(tmp_path, *flags, nodes=node, name="b").start(wait_nodes=1) as b:
                images = files_of(make_images(tmp_path / "images", 2))
                uuid = post(a, "/task/new/init")["uuid"]
                files = [("images", (name, data, "image/jpeg")) for name, data in images.items()]
                assert post(b, f"/task/new/upload/{uuid}", files=files) == {"success": True}
                assert post(b, f"/task/new/commit/{uuid}") == {"uuid": uuid}
                info = httpx.get(f"{b.url}/task/{uuid}/info", params={"token": TOKEN}).json()
                assert info["status"]["code"] == 20, info  # running: being sent, answered by A

                assert a.proc is not None
                os.killpg(a.proc.pid, signal.SIGKILL)
                a.proc.wait(10)

                def failed() -> dict[str, Any] | None:
                    info = httpx.get(f"{b.url}/task/{uuid}/info", params={"token": TOKEN}).json()
                    return info if info.get("status", {}).get("code") == 30 else None

                info = wait_until(failed, CLEANUP_S, "the stranded task failed")
                assert "replica holding this task's uploaded files is gone" in info["status"]["errorMessage"]
                output = httpx.get(f"{b.url}/task/{uuid}/output", params={"token": TOKEN}).json()
                assert "Please create the task again" in output[-1]
    finally:
        stop_process(stall)
