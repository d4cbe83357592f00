"""Forwarding after commit: node failures, dropped uploads, cancel/remove, restart, client disconnect."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pyodm import Node

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.images import make_images
from support.metrics import scrape, value
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
SLOW = ("--upload-max-speed", "150000", "--upload-concurrency", "4")  # ~800 KB take ~5 s to forward


def start_task(cluster: ClusterODM, tmp_path: Path, count: int = 200, size: int = 4096) -> str:
    images = make_images(tmp_path / "imgs", count, size=size)
    api = Node(cluster.host, cluster.port)
    return api.create_task(images, {"dsm": True}, name="fwd").uuid


def output(cluster: ClusterODM, uuid: str) -> list[str]:
    return httpx.get(f"{cluster.url}/task/{uuid}/output").json()


def sending_to(cluster: ClusterODM, uuid: str, nodes: list[SimNode]) -> SimNode:
    """The node the forward is sending to, from the task's output lines."""

    def find() -> SimNode | None:
        lines = [line for line in output(cluster, uuid) if line.startswith("Uploading to node ")]
        for node in nodes:
            if lines and f"{node.host}:{node.port}:" in lines[-1]:
                return node
        return None

    found = wait_until(find, 10, "forward progress")
    assert isinstance(found, SimNode)
    return found


def test_node_killed_mid_forward_switches_node(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(*SLOW)
    uuid = start_task(cluster, tmp_path)
    victim = sending_to(cluster, uuid, nodes)
    victim.stop()
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().status.value == 40
    assert tmp_entries(cluster) == []
    assert f"to {victim.host}:{victim.port} failed" in cluster.log()
    samples = scrape(f"{cluster.admin_url}/metrics")
    assert value(samples, "clusterodm_forward_retries_total") >= 1
    assert value(samples, "clusterodm_forwards_completed_total") == 1
    assert value(samples, "clusterodm_forwards_failed_total") == 0


def test_dropped_uploads_are_retried(stack: Stack, tmp_path: Path) -> None:
    drop = ("--drop-uploads", "0.5", "--seed", "7")
    _, cluster = stack(node_flags=[drop, drop, drop])
    uuid = start_task(cluster, tmp_path, count=60)
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().images_count >= 60
    assert "retrying" in cluster.log()
    assert tmp_entries(cluster) == []


def test_cancel_during_forward(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(*SLOW)
    uuid = start_task(cluster, tmp_path)
    sending_to(cluster, uuid, nodes)
    reply = httpx.post(f"{cluster.url}/task/cancel", data={"uuid": uuid}, timeout=1.5).json()
    assert reply == {"success": True}
    assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["status"]["code"] == 50
    wait_until(lambda: tmp_entries(cluster) == [], 1.0, "tmp empty after cancel")


def test_remove_during_forward(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(*SLOW)
    uuid = start_task(cluster, tmp_path)
    sending_to(cluster, uuid, nodes)
    assert httpx.post(f"{cluster.url}/task/remove", data={"uuid": uuid}, timeout=1.5).json() == {
        "success": True
    }
    assert "error" in httpx.get(f"{cluster.url}/task/{uuid}/info").json()
    wait_until(lambda: tmp_entries(cluster) == [], 1.0, "tmp empty after remove")


def test_restart_mid_forward_resumes(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(*SLOW)
    uuid = start_task(cluster, tmp_path)
    sending_to(cluster, uuid, nodes)
    cluster.stop()
    assert (cluster.tmp_dir / uuid).is_dir()
    cluster.start(wait_nodes=3)
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().status.value == 40
    assert "Resuming the forward" in cluster.log()
    assert tmp_entries(cluster) == []


def test_client_disconnect_mid_file_leaves_no_partial_file(stack: Stack) -> None:
    _, cluster = stack()
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n\r\n'
    ).encode()
    request = (
        f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: {cluster.host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n"
    ).encode()
    with socket.create_connection((cluster.host, cluster.port)) as sock:
        sock.sendall(request + head + b"\xff" * 300_000)
        wait_until(lambda: any((cluster.tmp_dir / uuid / "partial").glob("*")), 5, "partial file")
    wait_until(lambda: not any((cluster.tmp_dir / uuid / "partial").glob("*")), 5, "partial file removed")
    assert not list((cluster.tmp_dir / uuid / "files").iterdir())
    reply = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    assert reply == {"error": "Not enough images (0 files uploaded)"}
    assert tmp_entries(cluster) == []


def test_early_forward_off_sends_everything_after_commit(stack: Stack, tmp_path: Path) -> None:
    """`CLUSTERODM_EARLY_FORWARD=0`: no node hears of the task before commit, then one full forward."""
    nodes, cluster = stack(*SLOW, env={"CLUSTERODM_EARLY_FORWARD": "0"})
    images = make_images(tmp_path / "imgs", 60, size=4096)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    upload_url = f"{cluster.url}/task/new/upload/{uuid}"
    for path in images:
        with open(path, "rb") as f:
            reply = httpx.post(upload_url, files={"images": (Path(path).name, f)})
        assert reply.json() == {"success": True}

    def node_knows() -> bool:
        return any((n.data_dir / "tmp" / uuid).exists() for n in nodes)

    # With the early forward on, the first stored file starts an init on a node at once.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert not node_knows(), "a node got the task before commit"
        time.sleep(0.05)
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    sending = wait_until(
        lambda: [line for line in output(cluster, uuid) if line.startswith("Sending 60 files to node")],
        10,
        "the full forward after commit",
    )
    assert isinstance(sending, list) and sending[0].endswith("(attempt 1)")
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().images_count == 60
    assert tmp_entries(cluster) == []
