"""Upload path: 20 files of 50 MB, client -> clusterodm -> simulator node, against the same upload direct.

Prints, as medians over ROUNDS interleaved rounds (the shared machine is noisy): the client's upload
time (init + parallel uploads + commit), the time from commit until the node has the task committed
(the forward's tail: clusterodm sends each file on as soon as it is complete), the same upload made
directly to the node, the ratios; then clusterodm's peak RSS (VmHWM) over a separate 2 GB upload
(40 x 50 MB) in a fresh process. Run: `.venv/bin/python bench/bench_upload.py` (about 2 GB of temp
files; 1-2 minutes).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clusterodm import ClusterODM  # noqa: E402
from support.simnode import SimNode  # noqa: E402

FILES = 20
FILE_MB = 50
ROUNDS = 3
RSS_FILES = 40


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


def upload(url: str, paths: list[Path]) -> tuple[str, float, float]:
    """PyODM's pattern: init, one file per request (10 workers), commit -> (uuid, t_upload, t_commit)."""
    start = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        uuid = client.post(f"{url}/task/new/init", files={"name": (None, "bench")}).json()["uuid"]

        def send(path: Path) -> None:
            with path.open("rb") as f:
                reply = client.post(f"{url}/task/new/upload/{uuid}", files={"images": (path.name, f)}).json()
            assert reply == {"success": True}, reply

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(send, paths))
        uploaded = time.perf_counter()
        assert client.post(f"{url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
        committed = time.perf_counter()
    return uuid, uploaded - start, committed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def through_cluster(cluster: ClusterODM, node: SimNode, paths: list[Path]) -> tuple[float, float]:
    """(client upload time, commit -> node has the task committed) for one upload via clusterodm."""
    uuid, client_s, committed_at = upload(cluster.url, paths)
    while uuid not in [t["uuid"] for t in httpx.get(f"{node.url}/task/list").json()]:
        time.sleep(0.01)
    return client_s, time.perf_counter() - committed_at


def main() -> None:
    direct: list[float] = []
    client: list[float] = []
    tail: list[float] = []
    whole: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_files(work / "files", RSS_FILES)
        with SimNode(work, "--processing-seconds", "600", "-q", "100") as node:
            with ClusterODM(work, nodes=[node]) as cluster:
                cluster.wait_online(1)
                for _ in range(ROUNDS):
                    direct.append(upload(node.url, paths[:FILES])[1])
                    client_s, tail_s = through_cluster(cluster, node, paths[:FILES])
                    client.append(client_s)
                    tail.append(tail_s)
                    whole.append(client_s + tail_s)
            with ClusterODM(work, nodes=[node], name="rss") as cluster:
                cluster.wait_online(1)
                assert cluster.proc is not None
                big_client, big_tail = through_cluster(cluster, node, paths)
                rss = peak_rss_mb(cluster.proc.pid)
    total = FILES * FILE_MB
    med = statistics.median
    print(f"{FILES} files x {FILE_MB} MB = {total} MB, median of {ROUNDS} rounds")
    print(f"direct to node upload:         {med(direct):6.2f} s  ({total / med(direct):6.0f} MB/s)")
    print(f"client -> clusterodm upload:   {med(client):6.2f} s  ({total / med(client):6.0f} MB/s)")
    print(f"commit -> node committed:      {med(tail):6.2f} s")
    print(f"whole path (client + tail):    {med(whole):6.2f} s  ({total / med(whole):6.0f} MB/s)")
    print(f"whole path / direct:           {med(whole) / med(direct):6.2f}x")
    print(
        "rounds (direct, client, tail): "
        + ", ".join(f"({d:.2f}, {c:.2f}, {t:.2f})" for d, c, t in zip(direct, client, tail, strict=True))
    )
    big = RSS_FILES * FILE_MB
    print(
        f"{RSS_FILES} files x {FILE_MB} MB = {big} MB via clusterodm: "
        f"client {big_client:.2f} s, tail {big_tail:.2f} s"
    )
    print(f"clusterodm peak RSS (VmHWM):   {rss:6.1f} MB")


if __name__ == "__main__":
    main()
