"""Start ``clusterodm-simnode`` (the NodeODM simulator) as a subprocess on a free port.

with SimNode(tmp_path, "--token", "abc", "--processing-seconds", "0.2") as node:
    Node(node.host, node.port, token="abc").info()
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from support.procs import ServerProcess, free_port, start_process, wait_http


class SimNode(ServerProcess):
    """A running simulator; ``url``/``host``/``port`` address it, ``log_path`` holds its output."""

    def __init__(self, workdir: Path, *flags: str, host: str = "127.0.0.1", name: str = "simnode") -> None:
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.workdir = workdir
        self.flags = list(flags)
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.data_dir = workdir / f"{name}-{self.port}-data"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> SimNode:
        args = [sys.executable, "-m", "clusterodm.sim", "--host", self.host, "--port", str(self.port)]
        args += ["--data-dir", str(self.data_dir), *self.flags]
        self.proc = start_process(args, self.log_path)
        try:
            wait_http(f"{self.url}/auth/info", timeout=timeout, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def load(self) -> dict[str, int]:
        """The simulator-only `/_sim/load`: `queueCount` now, `maxQueueCount` (the most tasks it
        held queued or running at once), `maxRunning` and `parallelTasks` (its slots)."""
        load: dict[str, int] = httpx.get(f"{self.url}/_sim/load").json()
        return load

    def upload_requests(self, uuid: str) -> list[dict[str, Any]]:
        """The upload requests task `uuid` got, in order (the simulator-only `/_sim/uploads` route):
        each `{"files": [stored names], "outcome": "success" | "dropped" | "error: ..."}`."""
        requests: list[dict[str, Any]] = httpx.get(f"{self.url}/_sim/uploads/{uuid}").json()["requests"]
        return requests
