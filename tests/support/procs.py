"""Run servers as real subprocesses: free ports, log capture, readiness polling, bounded shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0 and release)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: the sockets stay bound until all are picked, so the kernel
    cannot hand out the same port twice (which it does for back-to-back binds to port 0)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def start_process(
    args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` with stdout and stderr appended to ``log_path``, in its own process group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )


def wait_http(
    url: str, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None
) -> None:
    """Poll ``url`` until it answers with any HTTP status; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode} before {url} answered{_tail(log_path)}"
            )
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s{_tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL the process group; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return proc.wait(timeout)


def _tail(log_path: Path | None, lines: int = 30) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- log tail ---\n" + "\n".join(text)


class ServerProcess:
    """A server run as a subprocess: subclasses set `log_path` and implement `start()`.

    Entering a started server does not start it again (`with server.start(...):` is common), so no
    process is orphaned; leaving stops it.
    """

    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL); returns its exit code."""
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
