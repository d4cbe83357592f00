"""A client that drops mid-upload: the node's task ends with exactly the complete files, byte for byte.

The simulator keeps what an aborted request brought, as NodeODM does (spec 9.1), so whatever
clusterodm streamed on of a file the client never finished would show up in the node's task.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import httpx
import pytest
from pyodm import Node

from clusterodm.pipeline.streaming import WAKE_BYTES
from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
STREAM = {"CLUSTERODM_STREAM_THROUGH": "1"}
BOUNDARY = "dr0pB0und"
BIG = 2 * WAKE_BYTES + (1 << 20)
"""Big enough for clusterodm to start streaming the file on before the client finished it."""


def part_head(name: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def form(files: dict[str, bytes]) -> bytes:
    body = b"".join(part_head(name) + data + b"\r\n" for name, data in files.items())
    return body + f"--{BOUNDARY}--\r\n".encode()


def upload(cluster: ClusterODM, uuid: str, files: dict[str, bytes]) -> dict[str, object]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    reply = httpx.post(
        f"{cluster.url}/task/new/upload/{uuid}", content=form(files), headers=headers, timeout=30
    )
    return reply.json()  # type: ignore[no-any-return]


def node_received(nodes: list[SimNode], uuid: str) -> int:
    """Bytes the nodes hold of `uuid`'s upload (stored files and parts still arriving)."""
    return sum(p.stat().st_size for n in nodes for p in (n.data_dir / "tmp" / uuid).rglob("*") if p.is_file())


def drop_after(cluster: ClusterODM, uuid: str, sent: bytes, declared: int, wait: Callable[[], bool]) -> None:
    """A raw upload request that declares `declared` bytes, sends `sent`, waits for `wait`, then closes."""
    head = (
        f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: {cluster.host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((cluster.host, cluster.port)) as sock:
        sock.sendall(head + sent)
        wait_until(wait, 10, "the node receiving the streamed file")


def finish(cluster: ClusterODM, uuid: str) -> dict[str, object]:
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    info: dict[str, object] = httpx.get(f"{cluster.url}/task/{uuid}/info").json()
    assert info["status"] == {"code": 40}, info
    return info


def node_files(node: SimNode, uuid: str) -> dict[str, bytes]:
    folder = node.data_dir / "tasks" / uuid / "images"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def assert_no_leftovers(nodes: list[SimNode], cluster: ClusterODM, uuid: str) -> None:
    """Nothing of the upload is left in clusterodm's tmp or the nodes' upload folders."""
    assert tmp_entries(cluster) == []
    for node in nodes:
        assert not (node.data_dir / "tmp" / uuid).exists()
        assert not list((node.data_dir / "tasks" / uuid).rglob(".partial"))


# Where the client's connection ends, as (what it sends of the whole body, whether to wait until the
# node is receiving the big file first).
A = os.urandom(BIG)
B = os.urandom(300_000)
WHOLE = form({"a.jpg": A, "b.jpg": B})
HEAD_A = len(part_head("a.jpg"))
DROPS = {
    "inside the first boundary line": (WHOLE[:5], False),
    "inside the part headers": (WHOLE[: HEAD_A - 30], False),
    "right after the part headers": (WHOLE[:HEAD_A], False),
    "mid-file while streaming": (WHOLE[: HEAD_A + BIG // 2], True),
    "inside the boundary line after the data": (WHOLE[: HEAD_A + BIG + 6], True),
    "inside the next part's headers": (WHOLE[: HEAD_A + BIG + 2 + 20], True),
}


@pytest.mark.parametrize("where", list(DROPS))
def test_drop_then_retry_gives_exact_files(stack: Stack, where: str) -> None:
    (node,), cluster = stack(node_flags=[()], env=STREAM)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    sent, streaming = DROPS[where]
    threshold = min(len(sent) - HEAD_A, BIG) // 2

    def ready() -> bool:
        return not streaming or node_received([node], uuid) >= threshold

    drop_after(cluster, uuid, sent, len(WHOLE) + 1000, ready)
    assert upload(cluster, uuid, {"a.jpg": A, "b.jpg": B}) == {"success": True}  # the client retries
    assert upload(cluster, uuid, {"c.jpg": b"c" * 1000}) == {"success": True}
    info = finish(cluster, uuid)
    assert node_files(node, uuid) == {"a.jpg": A, "b.jpg": B, "c.jpg": b"c" * 1000}
    assert info["imagesCount"] == 3
    assert_no_leftovers([node], cluster, uuid)


@pytest.mark.parametrize("when", ["before the retry", "after the retry"])
def test_drop_then_first_node_goes_away(stack: Stack, when: str) -> None:
    """The node that got the cut-off file goes away (before the client sends the file again, or
    after it did): the task lands whole on the other node."""
    nodes, cluster = stack(node_flags=[(), ()], env=STREAM)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    sent, _ = DROPS["mid-file while streaming"]
    drop_after(cluster, uuid, sent, len(WHOLE) + 1000, lambda: node_received(nodes, uuid) >= BIG // 4)
    [victim] = [n for n in nodes if (n.data_dir / "tmp" / uuid).exists()]
    [other] = [n for n in nodes if n is not victim]
    if when == "before the retry":
        victim.stop()
    assert upload(cluster, uuid, {"a.jpg": A, "b.jpg": B}) == {"success": True}
    victim.stop()
    info = finish(cluster, uuid)
    assert node_files(other, uuid) == {"a.jpg": A, "b.jpg": B}
    assert info["imagesCount"] == 2
    assert_no_leftovers([other], cluster, uuid)


def test_empty_image_answered_like_nodeodm_and_counted_once(stack: Stack) -> None:
    (node,), cluster = stack(node_flags=[()], env=STREAM)
    direct_uuid = httpx.post(f"{node.url}/task/new/init").json()["uuid"]
    direct = httpx.post(f"{node.url}/task/new/upload/{direct_uuid}", files={"images": ("z.jpg", b"")})
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    through = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files={"images": ("z.jpg", b"")})
    assert through.json() == direct.json() == {"success": True}
    assert upload(cluster, uuid, {"z.jpg": b""}) == {"success": True}  # a retry of the same empty file
    assert upload(cluster, uuid, {"y.jpg": b"y"}) == {"success": True}
    info = finish(cluster, uuid)
    assert node_files(node, uuid) == {"z.jpg": b"", "y.jpg": b"y"}
    assert info["imagesCount"] == 2
