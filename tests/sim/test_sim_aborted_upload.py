"""NodeODM keeps what an aborted upload request wrote, and counts it at commit (spec 9.1)."""

from __future__ import annotations

import os
import socket
import time

import httpx

from support.simnode import SimNode

BOUNDARY = "Ab0rted"


def part_head(name: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def send_and_close(sim: SimNode, uuid: str, body: bytes, declared: int) -> None:
    """A raw upload request that declares `declared` bytes, sends `body` and closes the connection."""
    head = (
        f"POST /task/new/upload/{uuid} HTTP/1.1\r\nHost: {sim.host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((sim.host, sim.port)) as sock:
        sock.sendall(head + body)


def wait_for_file(path: os.PathLike[str], size: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not (os.path.isfile(path) and os.path.getsize(path) == size):
        assert time.monotonic() < deadline, f"{path} never reached {size} bytes"
        time.sleep(0.02)


def test_aborted_request_keeps_complete_and_cut_off_parts(sim: SimNode) -> None:
    """Half of a.jpg arrives, then the connection closes: a.jpg stays with that half, b.jpg (complete,
    same request) stays too, and commit counts both beside c.jpg from a later request."""
    uuid = httpx.post(f"{sim.url}/task/new/init").json()["uuid"]
    whole_b, a = os.urandom(50_000), os.urandom(150_000)
    half = 76_800
    body = part_head("b.jpg") + whole_b + b"\r\n" + part_head("a.jpg") + a[:half]
    send_and_close(sim, uuid, body, declared=len(body) + len(a) - half + 100)
    folder = sim.data_dir / "tmp" / uuid
    wait_for_file(folder / "a.jpg", half)
    assert (folder / "b.jpg").read_bytes() == whole_b
    reply = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"images": ("c.jpg", b"c" * 10)})
    assert reply.json() == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 3
    images = sim.data_dir / "tasks" / uuid / "images"
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]
    assert (images / "a.jpg").read_bytes() == a[:half]


def test_retry_after_abort_adds_a_renamed_copy(sim: SimNode) -> None:
    """A client that sends the dropped file again gets a second file (`a_.jpg`) beside the cut-off
    one: NodeODM has no way to replace or delete an uploaded file."""
    uuid = httpx.post(f"{sim.url}/task/new/init").json()["uuid"]
    a = os.urandom(100_000)
    body = part_head("a.jpg") + a[:30_000]
    send_and_close(sim, uuid, body, declared=len(body) + 80_000)
    wait_for_file(sim.data_dir / "tmp" / uuid / "a.jpg", 30_000)
    reply = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"images": ("a.jpg", a)})
    assert reply.json() == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 2
    images = sim.data_dir / "tasks" / uuid / "images"
    assert (images / "a.jpg").read_bytes() == a[:30_000]
    assert (images / "a_.jpg").read_bytes() == a


def test_upload_requests_are_counted_per_task(sim: SimNode) -> None:
    """Simulator only: `/_sim/uploads/{uuid}` lists each upload request of a task with the files it
    stored, so a test can tell one request per file from batches; NodeODM's API is unchanged."""
    uuid = httpx.post(f"{sim.url}/task/new/init").json()["uuid"]
    batch = [("images", (f"{n}.jpg", n.encode())) for n in "abc"]
    assert httpx.post(f"{sim.url}/task/new/upload/{uuid}", files=batch).json() == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"images": ("d.jpg", b"d")}).json() == {
        "success": True
    }
    empty = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"other": ("e.jpg", b"e")})
    assert empty.json() == {"error": "Unexpected field"}
    assert sim.upload_requests(uuid) == [
        {"files": ["a.jpg", "b.jpg", "c.jpg"], "outcome": "success"},
        {"files": ["d.jpg"], "outcome": "success"},
        {"files": [], "outcome": "error: Unexpected field"},
    ]
    assert sim.upload_requests("not-a-task") == []
