"""Upload path: client -> clusterodm -> simulator node, against the same upload direct, per workload.

Workloads (PyODM's pattern: init, one file per request over 10 parallel workers, commit):
1000 x 100 KB (thermal/multispectral shape), 200 x 5 MB, 20 x 50 MB. Each round uploads the same
files directly to the node, through clusterodm with its defaults (small files batched, big files
piped on while they arrive), through clusterodm with `CLUSTERODM_STREAM_THROUGH=0` (every file
sent on once complete, in batches), through a third clusterodm with `CLUSTERODM_EARLY_FORWARD=0`
(store everything, forward after commit), and, when nginx is installed, through nginx
`proxy_pass` storing each request body on disk first and streaming it (references for what any
proxy costs on this machine); all interleaved because the shared machine is noisy. Per path it
prints medians and the best round of: the client's upload time (init + parallel uploads; commit
excluded), the time from commit until the node lists the task (the forward's tail), their sum
(the whole path), the ratio to the direct upload, the CPU seconds (user + sys) of the client
(this process: uploads and polling), the proxy and the node, and the proxy's CPU per client
upload request (its CPU seconds / the number of upload requests). Each task is removed from the
node after its round. Then clusterodm's peak RSS (VmHWM) over a separate 2 GB upload (40 x 50 MB)
in a fresh process with the defaults.
Run: `.venv/bin/python bench/bench_upload.py [CLIENT_MB_S] [--workloads small,medium,large]
[--rounds N]` (about 3 GB of temp files; 4-6 minutes); CLIENT_MB_S caps the client's upload
rate, like a client on a real network.
"""

from __future__ import annotations

import argparse
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

ROUNDS = 7
RSS_FILES = 40
WORKERS = 10
POLL_S = 0.005
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    name: str
    files: int
    size: int
    label: str

    @property
    def total_mb(self) -> float:
        return self.files * self.size / 1e6


WORKLOADS = {
    "small": Workload("small", 1000, 100_000, "1000 x 100 KB"),
    "medium": Workload("medium", 200, 5_000_000, "200 x 5 MB"),
    "large": Workload("large", 20, 50 << 20, "20 x 50 MB"),  # MiB, as in the figures before
}


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    """`count` files of `size` bytes, each different (a random block per file, repeated)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        block = os.urandom(min(size, 1 << 20))
        path = directory / f"IMG_{i:04d}.JPG"
        with path.open("wb") as out:
            left = size
            while left > 0:
                out.write(block[:left])
                left -= len(block)
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
    cpu_client: list[float] = field(default_factory=list)

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
    client_before = time.process_time()
    if via is None:
        uuid, client_s, _ = upload(node.url, paths, client_bytes_s)
        tail_s = 0.0
    else:
        uuid, client_s, tail_s = through_cluster(via, node, paths, poll, client_bytes_s)
    after = [cpu_s(p) for p in pids]
    run.cpu_client.append(time.process_time() - client_before)
    remove_on_node(node, uuid, poll)
    run.client.append(client_s)
    run.tail.append(tail_s)
    run.cpu_node.append(after[0] - before[0])
    run.cpu_cluster.append(after[1] - before[1] if via else 0.0)


def report(runs: list[Series], load: Workload, rounds: int) -> None:
    med = statistics.median
    direct = runs[0]
    base = med(direct.whole)
    print(f"\n{load.label} = {load.total_mb:.0f} MB, {rounds} interleaved rounds; median (best)")
    print(
        f"{'path':<24}{'client s':>14}{'tail s':>14}{'whole s':>14}{'/ direct':>16}"
        f"{'CPU client/proxy/node':>22}{'proxy ms/req':>14}"
    )
    for run in runs:
        whole = run.whole
        best = min(range(len(whole)), key=whole.__getitem__)
        print(
            f"{run.name:<24}"
            f"{med(run.client):7.2f} ({run.client[best]:4.2f})"
            f"{med(run.tail):7.2f} ({run.tail[best]:4.2f})"
            f"{med(whole):7.2f} ({whole[best]:4.2f})"
            f"{med(whole) / base:8.2f}x ({whole[best] / min(direct.whole):4.2f}x)"
            f"{med(run.cpu_client):8.2f} /{med(run.cpu_cluster):5.2f} /{med(run.cpu_node):5.2f}"
            f"{med(run.cpu_cluster) / load.files * 1000:14.2f}"
        )
    print(f"direct MB/s (median): {load.total_mb / base:.0f}")
    for run in runs:
        pairs = zip(run.client, run.tail, strict=True)
        print(f"rounds {run.name.strip()}: " + ", ".join(f"{c:.2f}+{t:.2f}" for c, t in pairs))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Upload path through clusterodm against direct.")
    parser.add_argument("client_mb_s", nargs="?", type=float, default=0.0, help="cap on the client's rate")
    parser.add_argument("--workloads", default="small,medium,large", help="comma-separated names")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-rss", action="store_true", help="skip the 2 GB peak-RSS run")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    client_bytes_s = args.client_mb_s * 1e6
    loads = [WORKLOADS[name] for name in args.workloads.split(",")]
    on, off = {"CLUSTERODM_STREAM_THROUGH": "1"}, {"CLUSTERODM_STREAM_THROUGH": "0"}
    with_nginx = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
    if not with_nginx:
        print("nginx not installed (apt install nginx-light): no nginx reference rows")
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    results: list[tuple[Workload, list[Series]]] = []
    with tempfile.TemporaryDirectory() as tmp, httpx.Client() as poll:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as another user when started as root
        with SimNode(work, "--processing-seconds", "600", "-q", "1000") as node:
            buffering = ["on", "off"] if with_nginx else []
            proxies = [nginx_via(work, node, b) for b in buffering]
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
                    ways: list[ClusterODM | Via | None] = [None, streaming, cluster, late]
                    ways += [via for _, via in proxies]
                    for load in loads:
                        paths = make_files(work / load.name, load.files, load.size)
                        runs = [
                            Series("direct to node"),
                            Series("clusterodm (defaults)"),
                            Series("  stream-through off"),
                            Series("  early forward off"),
                        ]
                        runs += [Series(f"nginx, {n}") for n in ("body on disk", "streaming")[: len(proxies)]]
                        for _ in range(args.rounds):
                            for run, via in zip(runs, ways, strict=True):
                                measure(run, node, via, paths, poll, client_bytes_s)
                        shutil.rmtree(work / load.name)
                        results.append((load, runs))
                    assert streaming.proc is not None
                    rss_defaults = peak_rss_mb(streaming.proc.pid)
            finally:
                for proc, _ in proxies:
                    proc.terminate()
                    proc.wait(10)
            big_client = big_tail = rss = float("nan")
            if not args.no_rss:
                paths = make_files(work / "rss", RSS_FILES, WORKLOADS["large"].size)
                with ClusterODM(work, nodes=[node], name="rss", env=on) as fresh:
                    fresh.wait_online(1)
                    assert fresh.proc is not None
                    _, big_client, big_tail = through_cluster(fresh, node, paths, poll)
                    rss = peak_rss_mb(fresh.proc.pid)
    if args.client_mb_s > 0:
        print(f"client capped at {args.client_mb_s:g} MB/s")
    for load, runs in results:
        report(runs, load, args.rounds)
    print(f"\nload after: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"clusterodm (defaults) peak RSS over all workloads (VmHWM): {rss_defaults:6.1f} MB")
    if not args.no_rss:
        print(
            f"{RSS_FILES} files x 50 MB = {RSS_FILES * 50} MB via a fresh clusterodm (defaults): "
            f"client {big_client:.2f} s, tail {big_tail:.2f} s, peak RSS (VmHWM) {rss:6.1f} MB"
        )


if __name__ == "__main__":
    main()
