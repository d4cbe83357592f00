"""clusterodm shares none of its ports: a second process on the same port is refused, not served
half the connections (granian's own sockets allow that, through SO_REUSEPORT; `exclusive.py`)."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import time
from pathlib import Path

import pytest
from granian.constants import HTTPModes, Interfaces

from clusterodm.exclusive import ExclusiveServer
from support.clusterodm import ClusterODM
from support.procs import free_port, start_process, stop_process, wait_http


def _join(address: str, port: int) -> socket.socket:
    """Listen on `port` the way a second granian server would (SO_REUSEPORT)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


def test_no_socket_can_join_the_ports_of_a_running_clusterodm(tmp_path: Path) -> None:
    with ClusterODM(tmp_path) as cluster:
        for port in (cluster.port, cluster.admin_web_port, cluster.admin_cli_port):
            for address in ("127.0.0.1", "0.0.0.0"):
                with pytest.raises(OSError) as refused:
                    _join(address, port).close()
                assert refused.value.errno == errno.EADDRINUSE, (address, port)
        assert cluster.proc is not None and cluster.proc.poll() is None


def test_two_clusterodm_started_at_once_on_one_port_one_is_refused(tmp_path: Path) -> None:
    port = free_port()
    procs = []
    for name in ("first", "second"):
        args = [sys.executable, "-m", "clusterodm.main", "--bind", "127.0.0.1", "--port", str(port)]
        args += ["--admin-cli-port", "0", "--admin-web-port", "0", "--data-dir", str(tmp_path / name)]
        procs.append((start_process(args, tmp_path / f"{name}.log"), tmp_path / f"{name}.log"))
    try:
        deadline = time.monotonic() + 30
        while all(proc.poll() is None for proc, _ in procs):
            assert time.monotonic() < deadline, "both serve the same port"
            time.sleep(0.05)
        (loser, loser_log), (winner, winner_log) = sorted(procs, key=lambda p: p[0].poll() is None)
        assert loser.returncode == 2, loser_log.read_text()
        assert loser_log.read_text().strip().splitlines()[-1] == (
            f"clusterodm: error: port {port} (--port) is already in use on 127.0.0.1: stop what "
            "listens there or choose another port with --port"
        )
        wait_http(f"http://127.0.0.1:{port}/info", proc=winner, log_path=winner_log)
    finally:
        for proc, _ in procs:
            stop_process(proc)


def test_a_server_does_not_start_on_a_port_another_process_listens_on_with_reuseport() -> None:
    """The start itself refuses (what stops the second of two processes that passed the port check
    together): without it, the bind would succeed next to the other listener."""
    port = free_port()

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never served")

    with _join("127.0.0.1", port):
        server = ExclusiveServer(
            app, address="127.0.0.1", port=port, interface=Interfaces.ASGINL, http=HTTPModes.http1
        )
        with pytest.raises(OSError) as refused:
            asyncio.run(asyncio.wait_for(server.serve(), 10))
        assert refused.value.errno == errno.EADDRINUSE


def test_a_free_port_is_served_and_released_at_the_stop() -> None:
    """The socket granian takes from us is closed when it stops: the port can be bound again."""
    port = free_port()

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def serve_once() -> bytes:
        server = ExclusiveServer(
            app, address="127.0.0.1", port=port, interface=Interfaces.ASGINL, http=HTTPModes.http1
        )
        serving = asyncio.create_task(server.serve())
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
        return answer

    assert asyncio.run(serve_once()).startswith(b"HTTP/1.1 204")
    with socket.socket() as again:  # SO_REUSEADDR passes TIME_WAIT, not a listener left open
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
