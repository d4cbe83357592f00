"""Soak: locust's WebODM-like users against clusterodm replicas on PostgreSQL behind nginx.

Started by `bench/soak_locust.sh` (which documents the knobs). Sets up a throwaway PostgreSQL,
simulator nodes, the replicas and nginx round-robin in front (as the tests do, `tests/support`),
runs `bench/locustfile.py` headless for the given time, and samples every replica's RSS from /proc
every few seconds. Users remove each task once downloaded (`--keep-tasks`: they do not), so the
number of tasks stays steady and RSS growth means a leak, not the route and task entry clusterodm
keeps for every task by design (until pruned). The verdict: zero failed requests (an `{"error":
...}` answer counts as failed) and every replica's RSS flat: its mean over the last minute within
10 % of its mean over the first minute. Exit code 0 only when both hold.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.clusterodm import ClusterODM  # noqa: E402
from support.nginx import Nginx  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402
from support.simnode import SimNode  # noqa: E402

SAMPLE_S = 5.0
RSS_TOLERANCE = 0.10


def seconds(duration: str) -> int:
    """`10m`, `90s`, `1h30m` or a plain number of seconds (locust's `-t` format)."""
    if duration.isdigit():
        return int(duration)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {duration!r} (e.g. 10m, 90s)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


Samples = dict[str, list[tuple[float, float]]]
"""replica name -> (seconds since the start, RSS in MB) samples."""


def sample_rss(pids: dict[str, int], samples: Samples, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(SAMPLE_S):
        at = time.monotonic() - started
        for name, pid in pids.items():
            try:
                samples[name].append((at, rss_mb(pid)))
            except OSError:
                samples[name].append((at, float("nan")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second")
    parser.add_argument("--duration", default="10m", help="locust run time (10m, 120s, ...)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3, help="simulator nodes")
    parser.add_argument("--processing-seconds", type=float, default=2.0, help="simulated task length")
    parser.add_argument("--slots", type=int, default=8, help="tasks each simulator node runs at once")
    parser.add_argument(
        "--keep-tasks",
        action="store_true",
        help="users do not remove their tasks once downloaded (the state kept per task then grows)",
    )
    parser.add_argument(
        "--upload-hash",
        action="store_true",
        help="nginx's optional hash on the upload's uuid (default: round-robin for every request)",
    )
    parser.add_argument(
        "--replica-args",
        default="",
        help="more clusterodm flags for every replica, one string (e.g. '--max-queued-tasks 0')",
    )
    args = parser.parse_args()
    run_s = seconds(args.duration)
    window_s = max(2 * SAMPLE_S, min(60.0, run_s / 3))
    work = Path(tempfile.mkdtemp(prefix="soak-replicas-"))
    work.chmod(0o755)
    print(f"soak: {args.users} users for {run_s} s against {args.replicas} replicas; files in {work}")
    passed = False
    with ExitStack() as stack:
        postgres = PostgresServer().start()
        stack.callback(postgres.stop)
        db = postgres.database()
        nodes = [
            stack.enter_context(
                SimNode(
                    work,
                    "-q",
                    str(args.slots),
                    "--processing-seconds",
                    str(args.processing_seconds),
                    name=f"node{i}",
                )
            )
            for i in range(args.nodes)
        ]
        replicas = []
        for i in range(args.replicas):
            replica = ClusterODM(
                work,
                "--db",
                db,
                "--log-level",
                "warn",
                *shlex.split(args.replica_args),
                nodes=nodes if i == 0 else (),
                name=f"r{i}",
                poll_interval=5,
            )
            replicas.append(stack.enter_context(replica.start(wait_nodes=args.nodes, timeout=30)))
        lb = stack.enter_context(Nginx(work, replicas, hash_uploads=args.upload_hash))
        pids = {f"r{i}": r.proc.pid for i, r in enumerate(replicas) if r.proc is not None}
        samples: Samples = {name: [] for name in pids}
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(pids, samples, stop), daemon=True)
        sampler.start()
        locust = [sys.executable, "-m", "locust", "-f", str(REPO / "bench" / "locustfile.py"), "--headless"]
        locust += ["--host", lb.url, "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{run_s}s"]
        locust += ["--csv", str(work / "locust"), "--only-summary", "--loglevel", "WARNING"]
        started = time.monotonic()
        env = {**os.environ, "BENCH_REMOVE": "" if args.keep_tasks else "1"}
        ran = subprocess.run(locust, cwd=work, env=env)
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - started
        load = os.getloadavg()[0]
        print(f"locust exited with {ran.returncode} after {elapsed:.0f} s; load average {load:.1f}")
        passed = verdict(work, samples, run_s, window_s) == 0
        passed = passed and ran.returncode == 0
    if passed and not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)  # the nodes' task files: gigabytes for a long soak
    else:
        print(f"soak: logs and files kept in {work}")
    return 0 if passed else 1


def verdict(work: Path, samples: Samples, run_s: float, window_s: float) -> int:
    ok = True
    with (work / "locust_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    print(
        f"requests {requests}, failed {failures}, {float(total['Requests/s']):.1f} req/s, "
        f"p50 {total['50%']} ms, p99 {total['99%']} ms"
    )
    for name, row in rows.items():
        if name != "Aggregated":
            counts = f"{row['Request Count']:>7s} req  {row['Failure Count']:>5s} failed"
            print(f"  {row['Type']:5s} {name:24s} {counts}")
    committed = int(rows.get("/task/new/commit", {}).get("Request Count", 0))
    removed = int(rows.get("/task/remove", {}).get("Request Count", 0))
    print(f"tasks committed {committed}, removed {removed}: {committed - removed} left queued or running")
    if failures:
        ok = False
        with (work / "locust_failures.csv").open() as f:
            for row in csv.DictReader(f):
                print(f"  FAILED {row['Occurrences']}x {row['Method']} {row['Name']}: {row['Error'][:200]}")
    with (work / "rss.csv").open("w") as f:
        f.write("replica,seconds,rss_mb\n")
        f.writelines(f"{name},{at:.0f},{mb:.1f}\n" for name, values in samples.items() for at, mb in values)
    print("RSS per minute (MB, mean):")
    for name, values in samples.items():
        minutes = sorted({int(at // 60) for at, _ in values})
        means = [statistics.mean(mb for at, mb in values if int(at // 60) == m) for m in minutes]
        print(f"  {name}: " + " ".join(f"{mb:.1f}" for mb in means))
    print(f"RSS, mean of the first vs the last {window_s:.0f} s (sampled every {SAMPLE_S:g} s):")
    for name, values in samples.items():
        first = [mb for at, mb in values if at <= window_s]
        last = [mb for at, mb in values if at >= run_s - window_s]
        if not first or not last:
            print(f"  {name}: too few samples")
            ok = False
            continue
        a, b = statistics.mean(first), statistics.mean(last)
        change = b / a - 1
        flat = abs(change) <= RSS_TOLERANCE
        ok &= flat
        peak = max(mb for _, mb in values)
        mark = "ok" if flat else "NOT FLAT"
        print(f"  {name}: {a:6.1f} MB -> {b:6.1f} MB ({change:+.1%}, peak {peak:.1f} MB) {mark}")
    exceptions = work / "locust_exceptions.csv"
    if exceptions.exists():
        for row in csv.DictReader(exceptions.open()):
            ok = False
            print(f"  EXCEPTION {row['Count']}x in the locustfile: {row['Message'][:200]}")
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
