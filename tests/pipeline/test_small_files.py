"""Many small files: the early forward sends them to the node in batches, each file exactly once.

The client uploads as PyODM does (one file per request, 10 in parallel); the simulator lists the
upload requests each task got (`SimNode.upload_requests`), so a test sees the batches. NodeODM and
the simulator keep what an aborted request brought (spec 9.1), so a batch cut by a reset must
never simply be sent again: that would leave `a_.jpg` copies beside the kept parts.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from pyodm import Node

from clusterodm.pipeline.attempt import BATCH_FILES
from clusterodm.pipeline.streaming import STREAM_AFTER_BYTES
from pipeline.conftest import FAST
from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.relay import Mode, Relay
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
COUNT = 500
BOUNDARY = "sm4llB0und"


def small_files(count: int = COUNT, seed: int = 12) -> dict[str, bytes]:
    """`count` files of 1-20 KB, each different."""
    rng = random.Random(seed)
    return {f"IMG_{i:04d}.JPG": rng.randbytes(rng.randrange(1000, 20_000)) for i in range(count)}


def upload_each(url: str, uuid: str, files: dict[str, bytes]) -> None:
    """PyODM's pattern: one file per request, 10 requests in parallel."""
    with httpx.Client(timeout=30) as client:

        def send(item: tuple[str, bytes]) -> None:
            reply = client.post(f"{url}/task/new/upload/{uuid}", files={"images": item})
            assert reply.json() == {"success": True}

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(send, files.items()))


def node_images(node: SimNode, uuid: str) -> dict[str, bytes]:
    folder = node.data_dir / "tasks" / uuid / "images"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def delivered(node: SimNode, uuid: str) -> list[str]:
    """Names of the files the node stored from successful upload requests, repeats included."""
    return [name for r in node.upload_requests(uuid) if r["outcome"] == "success" for name in r["files"]]


def commit_and_wait(cluster: ClusterODM, uuid: str) -> None:
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().status.value == 40


def test_small_files_arrive_once_in_batches_before_commit(stack: Stack) -> None:
    (node,), cluster = stack(node_flags=[()])
    files = small_files()
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, files)
    # The early forward sends while the client uploads; a file waits at most a second for company.
    wait_until(lambda: len(delivered(node, uuid)) == COUNT, 15, "every file on the node before commit")
    requests = node.upload_requests(uuid)
    assert all(r["outcome"] == "success" for r in requests)
    assert sorted(delivered(node, uuid)) == sorted(files)  # each exactly once
    assert len(requests) <= COUNT // 5, f"{len(requests)} upload requests for {COUNT} files"
    assert max(len(r["files"]) for r in requests) == BATCH_FILES
    commit_and_wait(cluster, uuid)
    assert node_images(node, uuid) == files
    assert tmp_entries(cluster) == []


def raw_upload(cluster: ClusterODM, uuid: str, files: dict[str, bytes], cut: int | None = None) -> None:
    """One upload request carrying all of `files`; with `cut`, the client sends that many bytes of
    the body and drops the connection once the proxy has stored what came before."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files.items()
    ]
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: {cluster.host}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((cluster.host, cluster.port)) as sock:
        if cut is None:
            sock.sendall(head + body)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.endswith(b'{"success":true}'), reply[-200:]
            return
        sock.sendall(head + body[:cut])
        staging = cluster.tmp_dir / uuid / "partial"
        wait_until(lambda: any(staging.glob("*")), 10, "the cut-off file being written")


def test_client_drops_a_request_mid_file_and_retries(stack: Stack) -> None:
    """A request of 40 files breaks off in its 21st; the client sends all 40 again. The 20 complete
    ones already went on in batches; the retry's copies of them are dropped as repeats."""
    (node,), cluster = stack(node_flags=[()])
    files = small_files()
    first, rest = dict(list(files.items())[:300]), dict(list(files.items())[300:])
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, first)
    group = dict(list(rest.items())[:40])
    sizes = [len(data) for data in group.values()]
    head_bytes = 120  # each part's head is shorter: the cut lands inside the 21st file's data
    raw_upload(cluster, uuid, group, cut=sum(sizes[:20]) + 20 * head_bytes + sizes[20] // 2)
    raw_upload(cluster, uuid, group)
    upload_each(cluster.url, uuid, dict(list(rest.items())[40:]))
    commit_and_wait(cluster, uuid)
    assert node_images(node, uuid) == files
    assert sorted(delivered(node, uuid)) == sorted(files)
    assert len(node.upload_requests(uuid)) <= COUNT // 5
    assert tmp_entries(cluster) == []


Relayed = Callable[..., tuple[SimNode, Relay, ClusterODM]]


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[Relayed]:
    """`relayed(*cluster_flags)`: one simulator behind a `Relay`, and a clusterodm that knows the
    node by the relay's address."""
    with ExitStack() as stack:

        def start(*flags: str) -> tuple[SimNode, Relay, ClusterODM]:
            node = stack.enter_context(SimNode(tmp_path, *FAST))
            relay = stack.enter_context(Relay(node))
            cluster = ClusterODM(tmp_path, *flags, nodes=[relay])
            stack.callback(cluster.stop)
            cluster.start(wait_nodes=1)
            return node, relay, cluster

        yield start


@pytest.mark.parametrize("mode", ["refuse", "cut", "late"])
def test_node_fails_one_batch(relayed: Relayed, mode: Mode) -> None:
    """The node's second upload request fails: answered with HTTP 500 before it stored anything
    (the batch is sent again), or reset halfway after the node stored part of it (the node keeps
    those files, so it is cleared first and gets everything again), or reset with the node reading
    the cut request only after it was cleared and the task initialised again (its parts land in the
    new upload: the count after commit shows it, and the task is sent once more). Each file ends
    in the task once, byte for byte."""
    node, relay, cluster = relayed()
    relay.fail_upload(2, mode, fraction=0.5)
    files = small_files()
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, files)
    commit_and_wait(cluster, uuid)
    assert relay.failed.is_set()
    assert node_images(node, uuid) == files
    requests = node.upload_requests(uuid)
    if mode == "refuse":
        assert sorted(delivered(node, uuid)) == sorted(files)
        assert "retrying" in cluster.log()
    else:
        assert any(r["outcome"].startswith("error") for r in requests)  # the node kept part of it
    if mode == "late":
        assert "a cut-off upload request reached it late" in cluster.log()
    if mode != "refuse":
        # "Cleared what failed uploads left of ...", or "... the empty upload folder" when a busy
        # node had not written anything of the cut requests yet when the clearing reached it.
        assert "INFO    clusterodm.pipeline: Cleared " in cluster.log()
    assert len(requests) <= 3 * COUNT // 5
    if mode != "late":  # there the attempt whose commit the count check undid also asks, in vain
        # Only a committed task can be removed: an attempt that failed before its commit asks for
        # nothing, or its request could remove the leftovers' task, or the task, a later one committed.
        removes = sum(line.startswith("POST /task/remove") for line in relay.request_lines)
        assert removes == node.log_path.read_text().count(f"task {uuid} removed")
    assert tmp_entries(cluster) == []


def test_cancel_while_batches_go(relayed: Relayed) -> None:
    """Batches are still going out (rate-capped, one at a time) when the task is cancelled: no
    upload request starts after the cancel, the node never gets the task, nothing is left in tmp."""
    node, relay, cluster = relayed("--upload-max-speed", "300000", "--upload-concurrency", "1")
    files = small_files(300)  # 6 batches at ~1.7 s each: the cancel lands with several to go
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, files)
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    wait_until(lambda: len(node.upload_requests(uuid)) >= 2, 15, "batches reaching the node")
    reply = httpx.post(f"{cluster.url}/task/cancel", data={"uuid": uuid}, timeout=1.5).json()
    assert reply == {"success": True}
    started = [t for t in relay.upload_targets if uuid in t]
    assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["status"]["code"] == 50
    wait_until(lambda: tmp_entries(cluster) == [], 2.0, "tmp empty after cancel")
    assert len(delivered(node, uuid)) < len(files)
    # Another task goes all the way through the same forwarder meanwhile.
    other = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, other, small_files(3, seed=5))
    commit_and_wait(cluster, other)
    assert [t for t in relay.upload_targets if uuid in t] == started
    assert uuid not in [t["uuid"] for t in httpx.get(f"{node.url}/task/list").json()]
    assert not (node.data_dir / "tasks" / uuid).exists()


def test_big_and_small_files_together(stack: Stack) -> None:
    """Files past `STREAM_AFTER_BYTES` are streamed on, one request each (`test_stream.py`); the
    small ones beside them still go in batches."""
    (node,), cluster = stack(node_flags=[()])
    big = {f"BIG_{i}.JPG": os.urandom(STREAM_AFTER_BYTES + (1 << 20)) for i in range(2)}
    small = small_files(120)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, {**big, **small})
    commit_and_wait(cluster, uuid)
    assert node_images(node, uuid) == {**big, **small}
    requests = node.upload_requests(uuid)
    assert sorted(delivered(node, uuid)) == sorted({**big, **small})
    assert sorted(r["files"][0] for r in requests if r["files"][0] in big) == sorted(big)
    assert all(len(r["files"]) == 1 for r in requests if r["files"][0] in big)
    assert len(requests) <= 2 + 120 // 10


def test_files_of_a_finished_task_are_reused_empty(stack: Stack) -> None:
    """Once a task is handed over, its files are emptied and kept in `data/spare/`; the next task's
    uploads are written into them. Smaller files than before: any old byte left would show."""
    (node,), cluster = stack(node_flags=[()])
    spare = cluster.data_dir / "spare"
    first = {name: data * 3 for name, data in small_files(60, seed=1).items()}
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, uuid, first)
    commit_and_wait(cluster, uuid)
    wait_until(lambda: len(list(spare.glob("[0-9]*"))) == 60, 5, "the first task's files kept as spares")
    assert all(p.stat().st_size == 0 for p in spare.glob("[0-9]*"))
    second = small_files(40, seed=2)
    other = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_each(cluster.url, other, second)
    assert len(list(spare.glob("[0-9]*"))) == 20
    commit_and_wait(cluster, other)
    assert node_images(node, other) == second
    assert tmp_entries(cluster) == []
