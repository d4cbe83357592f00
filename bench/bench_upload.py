"""Upload path: 20 files of 50 MB, client -> clusterodm -> simulator node, against the same upload direct.

Each round uploads the same files directly to the node, through clusterodm with stream-through
(`CLUSTERODM_STREAM_THROUGH=1`: each file piped on to the node while it still arrives), through
clusterodm sending each file on once it is complete (`CLUSTERODM_STREAM_THROUGH=0`), and through a
third clusterodm with `CLUSTERODM_EARLY_FORWARD=0` (store everything, forward after commit),
and, when nginx is installed, through nginx `proxy_pass` storing each request body on disk first
and streaming it (references for what any proxy costs on this machine); all interleaved because
the shared machine is noisy. Per path it prints medians and the best round of:
the client's upload time (init + parallel uploads; commit excluded), the time from commit until
the node has the task committed (the forward's tail), their sum, the ratio to the direct upload,
and the CPU seconds clusterodm and the node spent (user + sys). Each task is removed from the node
after its round. Then clusterodm's peak RSS (VmHWM) over a separate 2 GB upload (40 x 50 MB) in a
fresh process with stream-through. Run: `.venv/bin/python bench/bench_upload.py [CLIENT_MB_S]`
(about 2 GB of temp files; 1-2 minutes); CLIENT_MB_S caps the client's upload rate, like a client
on a real network.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_proxy import start_nginx  # noqa: E402
from support.clusterodm import ClusterODM  # noqa: E402
from support.procs import free_port, wait_http  # noqa: E402
from support.simnode import SimNode  # noqa: E402

FILES = 20
FILE_MB = 50
ROUNDS = 7
RSS_FILES = 40
WORKERS = 10
POLL_S = 0.005
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_files(directory: Path, count: int = FILES) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    block = os.urandom(1 << 20)
    for i in range(count):
        path = directory / f"IMG_{i:03d}.JPG"
        with path.open("wb") as out:
            for _ in range(FILE_MB):
                out.write(block)
        paths.append(path)
    return paths


class Throttled:
    """A file read at most `bytes_s` per second (a client behind a slower network than loopback)."""

    def __init__(self, path: Path, bytes_s: float) -> None:
        self._file = path.open("rb")
        self._bytes_s = bytes_s
        self._start = time.perf_counter()
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(1 << 20)
        self._read += len(data)
        ahead = self._read / self._bytes_s - (time.perf_counter() - self._start)
        if ahead > 0:
            time.sleep(ahead)
        return data

    def close(self) -> None:
        self._file.close()


def upload(url: str, paths: list[Path], client_bytes_s: float = 0) -> tuple[str, float, float]:
    """PyODM's pattern: init, one file per request (10 workers), commit -> (uuid, t_upload, t_commit).

    `client_bytes_s` > 0 caps the client's total rate (split over the 10 workers).
    """
    start = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        uuid = client.post(f"{url}/task/new/init", files={"name": (None, "bench")}).json()["uuid"]

        def send(path: Path) -> None:
            throttled = Throttled(path, client_bytes_s / WORKERS) if client_bytes_s > 0 else None
            f = cast(IO[bytes], throttled) if throttled else path.open("rb")
            try:
                reply = client.post(f"{url}/task/new/upload/{uuid}", files={"images": (path.name, f)}).json()
            finally:
                f.close()
            assert reply == {"success": True}, reply

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(send, paths))
        uploaded = time.perf_counter()
        reply = client.post(f"{url}/task/new/commit/{uuid}").json()
        assert reply == {"uuid": uuid}, reply
        committed = time.perf_counter()
    return uuid, uploaded - start, committed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + sys CPU seconds of a process and its children (nginx's worker) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS + sum(cpu_s(int(c)) for c in children)


NGINX_PROXY = """
    upstream node {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering {buffering};
        }}
    }}
"""


@dataclass
class Via:
    """A way to the node other than direct: its URL and the pid whose CPU it costs."""

    url: str
    pid: int


def nginx_via(work: Path, node: SimNode, buffering: str) -> tuple[subprocess.Popen[bytes], Via]:
    """nginx in front of the node: `on` stores each request body on disk first, `off` streams it."""
    port = free_port()
    upstream = int(node.url.rsplit(":", 1)[1])
    servers = NGINX_PROXY.format(upstream=upstream, port=port, buffering=buffering)
    proc = start_nginx(work, f"upload-{buffering}", servers, [])
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/info", proc=proc)
    return proc, Via(url, proc.pid)


def through_cluster(
    via: ClusterODM | Via, node: SimNode, paths: list[Path], poll: httpx.Client, client_bytes_s: float = 0
) -> tuple[str, float, float]:
    """(uuid, client upload time, commit -> node has the task committed) for one upload via a proxy.

    The node is polled over one kept-alive connection: a new client per poll costs enough CPU on a
    2-core machine to slow the forward it is measuring.
    """
    uuid, client_s, committed_at = upload(via.url, paths, client_bytes_s)
    while uuid not in [t["uuid"] for t in poll.get(f"{node.url}/task/list").json()]:
        time.sleep(POLL_S)
    return uuid, client_s, time.perf_counter() - committed_at


def remove_on_node(node: SimNode, uuid: str, poll: httpx.Client) -> None:
    """Delete a measured task's files on the node, so the page cache does not grow round after round.

    Without it the node keeps every upload (3 GB a round) and, on this VM, later rounds pay for
    first-touch memory: the node's and clusterodm's CPU per GB triples from the third round on.
    """
    assert poll.post(f"{node.url}/task/remove", data={"uuid": uuid}).json() == {"success": True}


@dataclass
class Series:
    """One way to the node, per round: client time, tail, and CPU of clusterodm and the node."""

    name: str
    client: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    cpu_cluster: list[float] = field(default_factory=list)
    cpu_node: list[float] = field(default_factory=list)

    @property
    def whole(self) -> list[float]:
        return [c + t for c, t in zip(self.client, self.tail, strict=True)]


def measure(
    run: Series,
    node: SimNode,
    via: ClusterODM | Via | None,
    paths: list[Path],
    poll: httpx.Client,
    client_bytes_s: float,
) -> None:
    pids = [node.proc.pid if node.proc else 0]
    if isinstance(via, Via):
        pids.append(via.pid)
    elif via is not None and via.proc is not None:
        pids.append(via.proc.pid)
    before = [cpu_s(p) for p in pids]
    if via is None:
        uuid, client_s, _ = upload(node.url, paths, client_bytes_s)
        tail_s = 0.0
    else:
        uuid, client_s, tail_s = through_cluster(via, node, paths, poll, client_bytes_s)
    after = [cpu_s(p) for p in pids]
    remove_on_node(node, uuid, poll)
    run.client.append(client_s)
    run.tail.append(tail_s)
    run.cpu_node.append(after[0] - before[0])
    run.cpu_cluster.append(after[1] - before[1] if via else 0.0)


def report(runs: list[Series], total_mb: int) -> None:
    med = statistics.median
    direct = runs[0]
    base = med(direct.whole)
    print(f"{FILES} files x {FILE_MB} MB = {total_mb} MB, {ROUNDS} interleaved rounds; median (best)")
    print(f"{'path':<22}{'client s':>14}{'tail s':>14}{'whole s':>14}{'/ direct':>16}{'CPU proxy+node':>16}")
    for run in runs:
        whole = run.whole
        best = min(range(len(whole)), key=whole.__getitem__)
        print(
            f"{run.name:<22}"
            f"{med(run.client):7.2f} ({run.client[best]:4.2f})"
            f"{med(run.tail):7.2f} ({run.tail[best]:4.2f})"
            f"{med(whole):7.2f} ({whole[best]:4.2f})"
            f"{med(whole) / base:8.2f}x ({whole[best] / min(direct.whole):4.2f}x)"
            f"{med(run.cpu_cluster):7.2f} +{med(run.cpu_node):5.2f}"
        )
    print(f"direct MB/s (median): {total_mb / base:.0f}")
    for run in runs:
        rounds = zip(run.client, run.tail, strict=True)
        print(f"rounds {run.name.strip()}: " + ", ".join(f"{c:.2f}+{t:.2f}" for c, t in rounds))


def main() -> None:
    client_mb_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    client_bytes_s = client_mb_s * 1e6
    direct, through = Series("direct to node"), Series("stream-through")
    overlap, after = Series("  complete files"), Series("  forward after commit")
    on, off = {"CLUSTERODM_STREAM_THROUGH": "1"}, {"CLUSTERODM_STREAM_THROUGH": "0"}
    runs = [direct, through, overlap, after]
    nginx: list[tuple[Series, str]] = []
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        nginx = [(Series("nginx, body on disk"), "on"), (Series("nginx, streaming"), "off")]
    else:
        print("nginx not installed (apt install nginx-light): no nginx reference rows")
    with tempfile.TemporaryDirectory() as tmp, httpx.Client() as poll:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as another user when started as root
        paths = make_files(work / "files", RSS_FILES)
        with SimNode(work, "--processing-seconds", "600", "-q", "1000") as node:
            proxies = [nginx_via(work, node, buffering) for _, buffering in nginx]
            try:
                with (
                    ClusterODM(work, nodes=[node], name="through", env=on) as streaming,
                    ClusterODM(work, nodes=[node], env=off) as cluster,
                    ClusterODM(
                        work, nodes=[node], name="late", env={"CLUSTERODM_EARLY_FORWARD": "0"}
                    ) as late,
                ):
                    for each in (streaming, cluster, late):
                        each.wait_online(1)
                    for _ in range(ROUNDS):
                        measure(direct, node, None, paths[:FILES], poll, client_bytes_s)
                        measure(through, node, streaming, paths[:FILES], poll, client_bytes_s)
                        measure(overlap, node, cluster, paths[:FILES], poll, client_bytes_s)
                        measure(after, node, late, paths[:FILES], poll, client_bytes_s)
                        for (run, _), (_, via) in zip(nginx, proxies, strict=True):
                            measure(run, node, via, paths[:FILES], poll, client_bytes_s)
            finally:
                for proc, _ in proxies:
                    proc.terminate()
                    proc.wait(10)
            with ClusterODM(work, nodes=[node], name="rss", env=on) as cluster:
                cluster.wait_online(1)
                assert cluster.proc is not None
                _, big_client, big_tail = through_cluster(cluster, node, paths, poll)
                rss = peak_rss_mb(cluster.proc.pid)
    if client_mb_s > 0:
        print(f"client capped at {client_mb_s:g} MB/s")
    report(runs + [run for run, _ in nginx], FILES * FILE_MB)
    big = RSS_FILES * FILE_MB
    print(
        f"{RSS_FILES} files x {FILE_MB} MB = {big} MB via clusterodm (stream-through): "
        f"client {big_client:.2f} s, tail {big_tail:.2f} s"
    )
    print(f"clusterodm peak RSS (VmHWM):   {rss:6.1f} MB")


if __name__ == "__main__":
    main()
