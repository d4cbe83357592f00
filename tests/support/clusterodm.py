"""Start ``clusterodm`` itself as a subprocess on free ports, with its own data dir.

with SimNode(tmp_path, "-q", "2") as node, ClusterODM(tmp_path, nodes=[node]) as cluster:
    Node(cluster.host, cluster.port).info()

All three ports are free ports (the admin ones can be read as ``admin_cli_port``/``admin_web_port``);
``nodes`` are written to ``data/nodes.json`` before the start, so they are polled at once.

Its store is the SQLite file in its data dir unless ``--db`` is among the flags, or a test module
runs on both backends (`use_databases`, set by the `clusterodm_backend` fixture): then each data
dir gets a database of its own, as it would a SQLite file, kept across restarts of that data dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import httpx

from clusterodm.cluster.store import Store, open_store
from support.procs import ServerProcess, free_ports, start_process, wait_http

_database_for: Callable[[Path], str] | None = None


def use_databases(chooser: Callable[[Path], str] | None) -> None:
    """Give every ClusterODM started without `--db` the database `chooser(data_dir)` names (None:
    back to the SQLite file in its data dir)."""
    global _database_for
    _database_for = chooser


def db_url(data_dir: Path) -> str:
    """The `--db` a ClusterODM with this data dir runs on ("": the SQLite file in it)."""
    return _database_for(data_dir) if _database_for is not None else ""


async def open_test_store(data_dir: Path) -> Store:
    """The store a ClusterODM with this data dir uses, for seeding it before the start (close it
    before starting the process: a SQLite file takes one process at a time)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return await open_store(db_url(data_dir), data_dir)


class HasAddress(Protocol):
    host: str
    port: int


class ClusterODM(ServerProcess):
    """A running clusterodm; ``url``/``host``/``port`` address its NodeODM API."""

    def __init__(
        self,
        workdir: Path,
        *flags: str,
        nodes: Iterable[HasAddress | tuple[str, int, str]] = (),
        host: str = "127.0.0.1",
        name: str = "clusterodm",
        data_dir: Path | None = None,
        poll_interval: float = 0.5,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port, self.admin_cli_port, self.admin_web_port = free_ports(3, host)
        self.url = f"http://{host}:{self.port}"
        self.admin_url = f"http://{host}:{self.admin_web_port}"
        self.flags = list(flags)
        self.data_dir = data_dir or workdir / f"{name}-data"
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.poll_interval = poll_interval
        self.env = dict(env or {})
        """Extra environment variables for the process (on top of ours)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_nodes(nodes)

    def _write_nodes(self, nodes: Iterable[HasAddress | tuple[str, int, str]]) -> None:
        entries = []
        for n in nodes:
            if isinstance(n, tuple):
                entries.append({"hostname": n[0], "port": n[1], "token": n[2]})
            else:
                entries.append({"hostname": n.host, "port": n.port, "token": getattr(n, "token", "")})
        if entries:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "nodes.json").write_text(json.dumps(entries))

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def start(self, timeout: float = 20.0, wait_nodes: int | None = None) -> ClusterODM:
        """Start and wait until the API answers (and, if asked, until that many nodes are online)."""
        args = [sys.executable, "-m", "clusterodm.main", "--bind", self.host, "--port", str(self.port)]
        args += ["--admin-cli-port", str(self.admin_cli_port), "--admin-web-port", str(self.admin_web_port)]
        args += ["--data-dir", str(self.data_dir), "--poll-interval", str(self.poll_interval), *self.flags]
        database = "" if "--db" in self.flags else db_url(self.data_dir)
        if database:
            args += ["--db", database]
        self.proc = start_process(args, self.log_path, env=self.env)
        try:
            wait_http(f"{self.url}/auth/info", timeout=timeout, proc=self.proc, log_path=self.log_path)
            if wait_nodes:
                self.wait_online(wait_nodes, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_online(self, count: int, timeout: float = 20.0) -> None:
        """Wait until `count` nodes are online, judged by the proxy's own /options answering."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.online_nodes() >= count:
                return
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {count} nodes online after {timeout} s; log:\n{self.log()[-3000:]}")

    def online_nodes(self) -> int:
        """Online nodes as the admin web reports them (needs the admin web; falls back to the log)."""
        try:
            r = httpx.get(f"{self.admin_url}/r/node/list", timeout=2)
            if r.status_code == 200:
                return sum(1 for n in r.json() if n.get("isOnline"))
        except (httpx.HTTPError, ValueError):
            pass
        return self.log().count(" is online (")
