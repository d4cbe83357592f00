"""Stream-through (`CLUSTERODM_STREAM_THROUGH=1`): files go on to the node while they still arrive."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
from pyodm import Node

from clusterodm.pipeline.streaming import WAKE_BYTES
from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
ON = {"CLUSTERODM_STREAM_THROUGH": "1"}
BOUNDARY = "b0und4ry"
HALF = WAKE_BYTES + (1 << 20)
"""What the client sends before holding back: enough for the sender to wake and pass it on."""


def part_head(name: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def node_partial_bytes(node: SimNode, uuid: str) -> int:
    """Bytes of files the node is receiving right now (its own `.partial/` folder)."""
    folder = node.data_dir / "tmp" / uuid / ".partial"
    return sum(p.stat().st_size for p in folder.glob("*")) if folder.is_dir() else 0


def upload(cluster: ClusterODM, uuid: str, body: Iterator[bytes]) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return httpx.post(f"{cluster.url}/task/new/upload/{uuid}", content=body, headers=headers, timeout=20)


def node_images(node: SimNode, uuid: str) -> dict[str, bytes]:
    folder = node.data_dir / "tasks" / uuid / "images"
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".jpg"}


def test_file_reaches_node_before_client_finished_it(stack: Stack) -> None:
    (node,), cluster = stack(node_flags=[()], env=ON)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    data = os.urandom(2 * HALF)
    seen: list[int] = []

    def body() -> Iterator[bytes]:
        yield part_head("a.jpg") + data[:HALF]
        # The client holds back the second half until the node is receiving the first one.
        got = wait_until(lambda: (n := node_partial_bytes(node, uuid)) >= HALF // 2 and n, 10, "stream")
        seen.append(int(got))  # type: ignore[call-overload]
        yield data[HALF:] + f"\r\n--{BOUNDARY}--\r\n".encode()

    assert upload(cluster, uuid, body()).json() == {"success": True}
    assert seen and seen[0] >= HALF // 2
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert node_images(node, uuid) == {"a.jpg": data}
    assert tmp_entries(cluster) == []


def test_aborted_part_is_not_delivered_and_resent_whole(stack: Stack) -> None:
    """The client drops a file mid-way, then sends it again: the node ends with one intact copy."""
    (node,), cluster = stack(node_flags=[()], env=ON)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    first, second = os.urandom(2 * HALF), os.urandom(HALF)

    class Dropped(Exception):
        pass

    def broken() -> Iterator[bytes]:
        yield part_head("b.jpg") + first[:HALF]
        wait_until(lambda: node_partial_bytes(node, uuid) >= HALF // 2, 10, "stream")
        raise Dropped

    try:
        upload(cluster, uuid, broken())
    except Dropped:
        pass
    else:
        raise AssertionError("the broken upload was not interrupted")
    wait_until(lambda: node_partial_bytes(node, uuid) == 0, 5, "the node dropping the streamed part")

    def whole() -> Iterator[bytes]:
        yield part_head("b.jpg") + first + b"\r\n" + part_head("c.jpg") + second
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    assert upload(cluster, uuid, whole()).json() == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    Node(cluster.host, cluster.port).get_task(uuid).wait_for_completion(interval=0.2)
    assert node_images(node, uuid) == {"b.jpg": first, "c.jpg": second}
    assert tmp_entries(cluster) == []


def test_stream_through_off_sends_only_complete_files(stack: Stack) -> None:
    """The switch off (default): nothing of a file reaches the node before it is complete here."""
    (node,), cluster = stack(node_flags=[()], env={"CLUSTERODM_STREAM_THROUGH": "0"})
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    data = os.urandom(2 * HALF)
    partial = cluster.tmp_dir / uuid / "partial"

    def body() -> Iterator[bytes]:
        yield part_head("a.jpg") + data[:HALF]
        wait_until(lambda: sum(p.stat().st_size for p in partial.glob("*")) >= HALF, 10, "stored")
        assert node_partial_bytes(node, uuid) == 0
        yield data[HALF:] + f"\r\n--{BOUNDARY}--\r\n".encode()

    assert upload(cluster, uuid, body()).json() == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    Node(cluster.host, cluster.port).get_task(uuid).wait_for_completion(interval=0.2)
    assert node_images(node, uuid) == {"a.jpg": data}
