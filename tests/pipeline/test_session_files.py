"""An upload session's own files live apart from the client's: any file name is just a file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pyodm import Node

from clusterodm.pipeline import api
from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.simnode import SimNode

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
# Names clusterodm uses (or used) for a session's record, its temp file and its folders.
NAMES = ["session.json", ".session.json.tmp", "body.json", ".body.json.tmp", "files", "partial"]


def test_session_names_are_ordinary_files(stack: Stack) -> None:
    """Files named like the session's record neither overwrite it (it survives a restart and the
    commit) nor let the record go to the node: the node gets exactly the client's files, with
    NodeODM's own rename of `body.json`."""
    (node,), cluster = stack(node_flags=[()], env={"CLUSTERODM_EARLY_FORWARD": "0"})
    uuid = httpx.post(f"{cluster.url}/task/new/init", files={"name": (None, "kept")}).json()["uuid"]
    sent = {name: f"client bytes of {name}".encode() for name in NAMES}
    for name, data in sent.items():
        reply = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files={"images": (name, data)})
        assert reply.json() == {"success": True}
    cluster.stop()
    cluster.start(wait_nodes=1)  # the session comes back from its record
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    info = task.info()
    assert info.name == "kept" and info.images_count == len(NAMES)
    images = node.data_dir / "tasks" / uuid / "images"
    got = {p.name: p.read_bytes() for p in images.iterdir()}
    expected = {("_body.json" if n == "body.json" else n): d for n, d in sent.items()}
    assert got == expected
    assert tmp_entries(cluster) == []


def test_repeat_check_reads_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Comparing a retried file with the stored one (possibly gigabytes) never runs on the loop."""
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_bytes(b"x" * 100_000)
    second.write_bytes(b"x" * 100_000)
    threads: list[int] = []
    real = api.same_content

    def recording(a: Path, b: Path) -> bool:
        threads.append(threading.get_ident())
        return real(a, b)

    monkeypatch.setattr(api, "same_content", recording)

    async def check() -> tuple[bool, int]:
        return await api.same_file(first, second), threading.get_ident()

    same, loop_thread = asyncio.run(check())
    assert same and threads and loop_thread not in threads
