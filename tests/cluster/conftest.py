"""Fixtures for the control-plane tests: real SQLite files and real node processes over loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("fake_node_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """A fake node in its own process; `stop()`/`start()` take it off and back on the same port."""

    def __init__(self, token: str = "") -> None:
        self.port = free_port()
        self.token = token
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), str(self.port), self.token], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the socket is bound and listening
        assert line.strip() == "ready", f"fake node did not start: {line!r}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def node_process() -> Iterator[type[NodeProcess]]:
    """Factory: `node_process(token="")` starts a fake node; all are stopped after the test."""
    started: list[NodeProcess] = []

    def make(token: str = "") -> NodeProcess:
        proc = NodeProcess(token)
        proc.start()
        started.append(proc)
        return proc

    yield make  # type: ignore[misc]
    for proc in started:
        proc.stop()
