"""`clusterodm demo`: a cluster to try in one command, without owning a NodeODM.

Three simulated NodeODM nodes (`clusterodm-simnode`, as child processes on free ports) and
clusterodm in front of them, in this process, with the usual ports and flags. State goes to a
temporary folder unless `--data-dir` is given. Ctrl-C or SIGTERM stops clusterodm, then the
simulators, and removes the temporary folder; the simulators also die with this process if it is
killed outright (Linux), so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from clusterodm.config import Config, ConfigError, build_parser, config_or_exit, fail
from clusterodm.logs import setup_logging
from clusterodm.notices import local_address

if TYPE_CHECKING:
    from clusterodm.services import Cluster, Job

log = logging.getLogger("clusterodm.demo")

NODE_SLOTS = (1, 2, 2)
"""Tasks each simulated node processes at once: unequal, so the ranking has something to do."""
DEMO_POLL_INTERVAL_S = 5.0
"""Nodes' queues show on the admin page within seconds (the default 60 s is for real clusters)."""
SIM_START_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 30.0
SIM_STOP_TIMEOUT_S = 5.0
DETACH_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1


@dataclass
class Simulator:
    """One `clusterodm-simnode` child process."""

    port: int
    slots: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def _free_ports(count: int) -> list[int]:
    """Distinct ports free a moment ago (all bound at once, so none is handed out twice)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the demo process dies, even by SIGKILL."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_simulators(workdir: Path) -> list[Simulator]:
    """Start the simulated nodes, each in its own session: the terminal's Ctrl-C reaches only
    the demo process, which stops clusterodm before its nodes."""
    sims = []
    for number, (port, slots) in enumerate(zip(_free_ports(len(NODE_SLOTS)), NODE_SLOTS, strict=True), 1):
        log_path = workdir / f"node{number}.log"
        args = [sys.executable, "-m", "clusterodm.sim", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--parallel-tasks", str(slots), "--data-dir", str(workdir / f"node{number}")]
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # no thread runs yet in this process
            )
        sims.append(Simulator(port, slots, log_path, proc))
    return sims


def wait_listening(sims: list[Simulator], timeout: float = SIM_START_TIMEOUT_S) -> None:
    """Block until every simulator accepts connections; RuntimeError (with its log) if one exits."""
    deadline = time.monotonic() + timeout
    for sim in sims:
        while True:
            if sim.proc.poll() is not None:
                tail = sim.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"simulated node on port {sim.port} exited at start:\n{tail}")
            try:
                socket.create_connection(sim.address, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"simulated node on port {sim.port} did not start in {timeout} s"
                    ) from None
                time.sleep(0.05)


def stop_simulators(sims: list[Simulator]) -> None:
    """SIGTERM all, wait a bounded time, SIGKILL what is left; every child is reaped."""
    for sim in sims:
        if sim.proc.poll() is None:
            sim.proc.terminate()
    deadline = time.monotonic() + SIM_STOP_TIMEOUT_S
    for sim in sims:
        try:
            sim.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("simulated node on port %d did not stop on SIGTERM: killed", sim.port)
            sim.proc.kill()
            sim.proc.wait()


def banner(config: Config, sims: list[Simulator], state: str) -> str:
    """What to do with the running demo: addresses, a PyODM snippet, how to stop."""
    api = local_address(config.bind)
    admin = local_address(config.admin_address)
    scheme = "https" if config.ssl else "http"
    token = f', token="{config.token}"' if config.token else ""
    nodes = ", ".join(f"127.0.0.1:{s.port} ({s.slots} slot{'s' if s.slots > 1 else ''})" for s in sims)
    lines = [
        "",
        f"clusterodm demo: {len(sims)} simulated NodeODM nodes behind one clusterodm, ready.",
        "",
        f"  NodeODM API (PyODM, WebODM):  {scheme}://{api}:{config.port}",
    ]
    if config.admin_web_port:
        lines.append(f"  Admin web page:               http://{admin}:{config.admin_web_port}")
    if config.admin_cli_port:
        lines.append(f"  Admin CLI:                    telnet {admin} {config.admin_cli_port}")
    lines += [
        f"  Simulated nodes:              {nodes}",
        f"  State:                        {state}",
        "",
        "Send it a task from Python (pip install pyodm; the simulator takes any files as images and",
        "'processes' them for a few seconds):",
        "",
        "    from pyodm import Node",
        f'    node = Node("{api}", {config.port}{token})',
        '    task = node.create_task(["1.jpg", "2.jpg", "3.jpg"])',
        "    task.wait_for_completion()",
        '    task.download_assets("results")  # unpacks all.zip into results/',
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


class Demo:
    """The `Extension` that registers the simulators with the cluster and announces it ready."""

    def __init__(self, config: Config, sims: list[Simulator], state: str, keep_state: bool) -> None:
        self._config = config
        self._sims = sims
        self._state = state
        self._keep_state = keep_state
        self._added: list[tuple[str, int]] = []

    async def attach(self, cluster: Cluster) -> list[Job]:
        for host, port in (sim.address for sim in self._sims):
            if await cluster.registry.add(host, port) is not None:
                self._added.append((host, port))
        return [lambda: self._announce(cluster)]

    async def _announce(self, cluster: Cluster) -> None:
        """Print the banner once the API answers and every simulated node is online."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if await self._api_listening() and self._nodes_online(cluster):
                break
            await asyncio.sleep(0.1)
        else:
            log.warning("the demo cluster is not fully up after %.0f s; see the log above", READY_TIMEOUT_S)
        print(banner(self._config, self._sims, self._state), flush=True)

    async def _api_listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection(local_address(self._config.bind), self._config.port)
        except OSError:
            return False
        writer.close()
        return True

    def _nodes_online(self, cluster: Cluster) -> bool:
        now = cluster.registry.now()
        online = {(n.hostname, n.port) for n in cluster.registry if n.online(now)}
        return all(sim.address in online for sim in self._sims)

    async def detach(self, cluster: Cluster) -> None:
        """A kept data folder should not list nodes that are gone: remove them, keeping their
        tasks' final state readable (the simulators still run at this point)."""
        if not self._keep_state:
            return
        for host, port in self._added:
            node = cluster.registry.find(host, port)
            if node is not None:
                try:
                    await asyncio.wait_for(cluster.remove_node(node, "the demo stopped"), DETACH_TIMEOUT_S)
                except TimeoutError:
                    log.warning("removing demo node %s took too long; it stays listed", node.name)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside the event loop (starting, stopping the simulators) ends like Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """Run the demo until Ctrl-C/SIGTERM; 0 after a clean stop, 2 on a bad flag, 1 if it cannot start."""
    from clusterodm.main import check_ports_free, serve

    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="clusterodm-demo-"))
    sims: list[Simulator] = []
    try:
        parser = build_parser(
            prog="clusterodm demo",
            description="Start three simulated NodeODM nodes and clusterodm in front of them. "
            "Takes clusterodm's flags; state goes to a temporary folder unless --data-dir is given.",
        )
        temp_state = workdir / "data"
        config = config_or_exit(
            argv, defaults={"data_dir": temp_state, "poll_interval": DEMO_POLL_INTERVAL_S}, parser=parser
        )
        setup_logging(config.log_level, config.log_format)
        keep_state = config.data_dir != temp_state
        state = str(config.data_dir) if keep_state else f"{config.data_dir} (removed at exit)"
        try:
            check_ports_free(config)  # before starting the simulators, which would have to go again
        except ConfigError as e:
            fail(str(e))
        sims = start_simulators(workdir)
        try:
            wait_listening(sims)
        except RuntimeError as e:
            log.error("%s", e)
            return 1
        serve(config, Demo(config, sims, state, keep_state))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave children or files behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_simulators(sims)
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
