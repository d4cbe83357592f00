"""`clusterodm demo` as a user runs it: a real process with three simulator children."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from pyodm import Node
from pyodm.types import TaskStatus

from support.images import make_images
from support.procs import free_ports, start_process, stop_process

READY = "simulated NodeODM nodes behind one clusterodm, ready."


class Demo:
    """`clusterodm demo` on free ports, its output (banner and logs) in one file."""

    def __init__(self, tmp_path: Path, *flags: str) -> None:
        self.port, self.cli_port, self.web_port = free_ports(3)
        self.log_path = tmp_path / "demo.log"
        args = [sys.executable, "-m", "clusterodm.main", "demo", "--bind", "127.0.0.1"]
        args += ["--port", str(self.port), "--admin-cli-port", str(self.cli_port)]
        args += ["--admin-web-port", str(self.web_port), *flags]
        self.proc: subprocess.Popen[bytes] = start_process(args, self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while READY not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo not ready after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return self.log()

    def children(self) -> list[int]:
        """Processes whose parent is the demo (read from /proc, as `ps` would)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                # Fields after the command name (which may hold spaces): state, ppid, ...
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def close(self) -> None:
        stop_process(self.proc)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether `pid` no longer exists (a zombie not yet reaped by init counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_demo_processes_a_pyodm_task_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        banner = demo.wait_ready()
        assert f"NodeODM API (PyODM, WebODM):  http://127.0.0.1:{demo.port}" in banner
        assert f"Admin web page:               http://127.0.0.1:{demo.web_port}" in banner
        assert f"telnet 127.0.0.1 {demo.cli_port}" in banner
        assert f'node = Node("127.0.0.1", {demo.port})' in banner
        sim_ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+) \(\d slots?\)", banner)]
        assert len(set(sim_ports)) == 3
        state = Path(re.findall(r"State: +(\S+) \(removed at exit\)", banner)[0])
        assert (state / "clusterodm.sqlite3").exists()
        assert "No processing node" not in banner
        children = demo.children()
        assert len(children) == 3, demo.log()
        nodes = httpx.get(f"http://127.0.0.1:{demo.web_port}/r/node/list", timeout=5).json()
        assert sorted(n["name"] for n in nodes) == sorted(f"127.0.0.1:{p}" for p in sim_ports)
        assert all(n["isOnline"] for n in nodes)

        task = Node("127.0.0.1", demo.port).create_task(make_images(tmp_path / "images", 3))
        task.wait_for_completion(interval=0.2)
        assert task.info().status == TaskStatus.COMPLETED
        # The snippet the banner prints, to the last line.
        task.download_assets(str(tmp_path / "results"))
        assert any((tmp_path / "results").iterdir())

        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(timeout=15) == 0, demo.log()[-3000:]
    finally:
        demo.close()
    assert all(_gone(pid) for pid in children), "a simulator outlived the demo"
    assert not state.parent.exists(), "the temporary folder was left behind"
    assert "state saved, bye" in demo.log()


def test_demo_keeps_a_given_data_dir_without_its_gone_nodes(tmp_path: Path) -> None:
    data = tmp_path / "kept"
    demo = Demo(tmp_path, "--data-dir", str(data))
    try:
        banner = demo.wait_ready()
        assert f"State:                        {data}\n" in banner
        assert len(json.loads((data / "nodes.json").read_text())) == 3
        demo.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.proc.wait(timeout=15) == 0, demo.log()[-3000:]
    finally:
        demo.close()
    assert (data / "clusterodm.sqlite3").exists()
    assert json.loads((data / "nodes.json").read_text()) == []


@pytest.mark.skipif(sys.platform != "linux", reason="the simulators follow their parent through prctl")
def test_simulators_die_with_a_killed_demo(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    banner = ""
    try:
        banner = demo.wait_ready()
        children = demo.children()
        assert len(children) == 3
        os.kill(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait(timeout=5)
        assert all(_gone(pid) for pid in children), "a simulator outlived a killed demo"
    finally:
        demo.close()
        # Nobody was left to remove the temporary folder.
        state = re.findall(r"State: +(\S+) \(removed at exit\)", banner)
        if state:
            subprocess.run(["rm", "-rf", str(Path(state[0]).parent)], check=False)


def test_demo_help_and_bad_flag(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "clusterodm.main", "demo"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "usage: clusterodm demo" in shown.stdout and "--data-dir" in shown.stdout
    bad = subprocess.run([*run, "--port", "0"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "port must be between 1 and 65535" in bad.stderr
    assert (
        "clusterodm demo"
        in subprocess.run([*run[:-1], "--help"], capture_output=True, text=True, timeout=30).stdout
    )


def test_demo_on_a_taken_port_says_so_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = set(Path(tempfile.gettempdir()).glob("clusterodm-demo-*"))
        demo = Demo(tmp_path, "--port", str(port))  # the later --port wins
        try:
            code = demo.proc.wait(timeout=30)
        finally:
            demo.close()
    assert code == 2, demo.log()[-3000:]
    errors = [line for line in demo.log().splitlines() if line.startswith("clusterodm: error:")]
    assert errors == [
        f"clusterodm: error: port {port} (--port) is already in use on 127.0.0.1: stop what listens "
        "there or choose another port with --port"
    ]
    assert "backtrace" not in demo.log().lower()
    assert set(Path(tempfile.gettempdir()).glob("clusterodm-demo-*")) == before
