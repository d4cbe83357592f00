"""Replicas benchmark: what PostgreSQL and a second replica cost or bring on the routed hot path.

Three measurements, each against a baseline taken in the same run, with a fast nginx "node"
(bench_proxy's: answers any `GET /task/{uuid}/info` with a fixed JSON) behind every clusterodm:

1. Warm cache: routed `GET /task/{uuid}/info` at 64 connections (wrk) through one clusterodm on
   SQLite and one on PostgreSQL, rounds alternating; the route is in both route tables, so the
   store is off the request path (target: PostgreSQL >= 0.95x SQLite).
2. Cache miss: the first lookup of a route another replica created, one request at a time over a
   keep-alive connection: the route row is written straight into the database, without the
   NOTIFY that would otherwise have put it in this replica's table first (a lookup racing the
   notice, or a notice missed while the listener reconnected), so the request asks PostgreSQL.
   Each miss is followed by the same uuid again (now cached) as the baseline, and by a bare
   `SELECT 1` from the benchmark (what a database round trip costs on this machine at that
   moment), interleaved so all three see the same load (target: miss p99 under 5 ms).
3. Scale-out: nginx round-robin over two PostgreSQL replicas against the same nginx over one
   of them, wrk at 64 connections, rounds alternating: requests/s, and CPU per request of the
   replicas (and of nginx) from /proc.

    PYTHONPATH=python .venv/bin/python bench/bench_replicas.py [--runs 4] [--duration 8] [--misses 2000]

Needs PostgreSQL (Debian `postgresql`, started here as a throwaway cluster, as the tests do),
/usr/sbin/nginx (`nginx-light`) and /usr/bin/wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_proxy import INFO, NODE_INFO, NODE_SERVER, UUID, start_nginx, wrk  # noqa: E402
from bench_upload import cpu_s  # noqa: E402
from clusterodm.cluster.store import open_store  # noqa: E402
from support.nginx import Nginx  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402
from support.procs import free_port, start_process, stop_process, wait_http  # noqa: E402

PATH = f"/task/{UUID}/info"


class Replica:
    """One clusterodm process (API only, no admin ports) on `db`."""

    host = "127.0.0.1"

    def __init__(self, work: Path, name: str, db: str) -> None:
        self.name = name
        self.port = free_port()
        data = work / f"data-{name}"
        data.mkdir(exist_ok=True)
        args = [sys.executable, "-m", "clusterodm.main", "--bind", self.host, "--port", str(self.port)]
        args += ["--admin-cli-port", "0", "--admin-web-port", "0", "--data-dir", str(data)]
        args += ["--db", db, "--poll-interval", "5", "--log-level", "warn"]
        # One hash seed for all: processes then differ only by what is compared.
        self.proc = start_process(args, work / f"clusterodm-{name}.log", env={"PYTHONHASHSEED": "0"})
        self.url = f"http://{self.host}:{self.port}"

    def ready(self) -> None:
        wait_http(f"{self.url}/healthz", proc=self.proc)
        deadline = time.monotonic() + 20
        while b"ready" not in _get(self.url, "/readyz") or b"error" in _get(self.url, PATH):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never got ready with its node online")
            time.sleep(0.1)


def _get(base: str, path: str) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


async def seed(db: str, data_dir: Path, node_port: int) -> None:
    """The node and the benchmark's route, written before any replica starts (so they load them)."""
    store = await open_store(db, data_dir)
    try:
        node_id = await store.insert_node("127.0.0.1", node_port, "", False, None, 0)
        await store.put_routes([(UUID, node_id, 0, int(time.time() * 1000))])
    finally:
        await store.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def warm_sqlite_vs_pg(sqlite: Replica, pg: Replica, runs: int, duration: int) -> None:
    print("== 1. warm cache: routed GET info at 64 connections, SQLite vs PostgreSQL")
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"sqlite": [], "pg": []}
    for run in range(1, runs + 1):
        pair = [("sqlite", sqlite), ("pg", pg)]
        figures = {}
        for kind, replica in pair if run % 2 else reversed(pair):
            before = cpu_s(replica.proc.pid)
            rps, p99 = wrk(f"{replica.url}{PATH}", 64, duration, [])
            cpu[kind].append((cpu_s(replica.proc.pid) - before) / (rps * duration) * 1e6)
            figures[kind] = (rps, p99)
        ratio = figures["pg"][0] / figures["sqlite"][0]
        ratios.append(ratio)
        print(
            f"run {run}: SQLite {figures['sqlite'][0]:8.0f} req/s p99 {figures['sqlite'][1]:6.2f} ms | "
            f"PostgreSQL {figures['pg'][0]:8.0f} req/s p99 {figures['pg'][1]:6.2f} ms | PG/SQLite {ratio:.3f}"
        )
    print(
        f"PostgreSQL / SQLite throughput, median of {runs} rounds: {statistics.median(ratios):.3f} "
        f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}); CPU per request median: "
        f"SQLite {statistics.median(cpu['sqlite']):.1f} us, PostgreSQL {statistics.median(cpu['pg']):.1f} us"
    )


def cache_misses(replica: Replica, db: str, count: int) -> None:
    print(f"== 2. first lookup of {count} routes created elsewhere (cache miss -> PostgreSQL), then again")
    uuids = [str(uuidlib.uuid4()) for _ in range(count)]
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM nodes").fetchone()
        assert row is not None
        now = int(time.time() * 1000)
        with conn.cursor() as cursor:  # straight in: no NOTIFY, so the replica has to ask
            cursor.executemany("INSERT INTO routes VALUES (%s, %s, 0, %s)", [(u, row[0], now) for u in uuids])
    conn_http = http.client.HTTPConnection(replica.host, replica.port, timeout=5)
    timings: dict[str, list[float]] = {"miss": [], "hit": [], "select": []}

    def lookup(kind: str, uuid: str) -> None:
        start = time.perf_counter()
        conn_http.request("GET", f"/task/{uuid}/info")
        body = conn_http.getresponse().read()
        timings[kind].append((time.perf_counter() - start) * 1000)
        if b"error" in body:
            raise RuntimeError(f"{uuid}: {body[:200]!r}")

    # Interleaved, so the three figures see the same machine load: the miss, the same uuid again
    # (cached: the baseline), and one `SELECT 1` from here (the bare database round trip).
    try:
        with psycopg.connect(db, autocommit=True) as probe:
            for uuid in uuids:
                lookup("miss", uuid)
                lookup("hit", uuid)
                start = time.perf_counter()
                probe.execute("SELECT 1").fetchone()
                timings["select"].append((time.perf_counter() - start) * 1000)
    finally:
        conn_http.close()
    labels = {"miss": "first lookup (miss)", "hit": "second lookup (cached)", "select": "SELECT 1 round trip"}
    for kind, label in labels.items():
        values = timings[kind]
        print(
            f"{label:24s} p50 {percentile(values, 0.5):6.3f} ms  p99 {percentile(values, 0.99):6.3f} ms  "
            f"max {max(values):6.2f} ms"
        )
    extra = statistics.median(timings["miss"]) - statistics.median(timings["hit"])
    print(f"a miss adds {extra:.3f} ms at the median (target: miss p99 < 5 ms)")


def scale_out(one: Nginx, two: Nginx, replicas: list[Replica], runs: int, duration: int) -> None:
    print("== 3. nginx round-robin over two PostgreSQL replicas vs over one (and the first one direct)")
    rows: dict[str, list[tuple[float, float, float, float]]] = {"direct": [], "one": [], "two": []}
    targets = {"direct": replicas[0].url, "one": one.url, "two": two.url}
    nginx_pid = {
        "direct": None,
        "one": one.proc.pid if one.proc else None,
        "two": two.proc.pid if two.proc else None,
    }
    for run in range(1, runs + 1):
        order = ["direct", "one", "two"] if run % 2 else ["two", "one", "direct"]
        for kind in order:
            pids = [r.proc.pid for r in replicas]
            before = [cpu_s(pid) for pid in pids]
            lb = nginx_pid[kind]
            lb_before = cpu_s(lb) if lb else 0.0
            rps, p99 = wrk(f"{targets[kind]}{PATH}", 64, duration, [])
            requests = rps * duration
            spent = sum(cpu_s(pid) - b for pid, b in zip(pids, before, strict=True))
            lb_us = (cpu_s(lb) - lb_before) / requests * 1e6 if lb else 0.0
            rows[kind].append((rps, p99, spent / requests * 1e6, lb_us))
            print(
                f"run {run}: {kind:6s} {rps:8.0f} req/s  p99 {p99:6.2f} ms  "
                f"clusterodm CPU {spent / requests * 1e6:6.1f} us/req  nginx CPU {lb_us:5.1f} us/req"
            )
    ratio = [t[0] / o[0] for o, t in zip(rows["one"], rows["two"], strict=True)]
    cpu = {kind: statistics.median(r[2] for r in rows[kind]) for kind in rows}
    lb_cpu = {kind: statistics.median(r[3] for r in rows[kind]) for kind in ("one", "two")}
    print(
        f"two / one replicas behind nginx, throughput per round: {', '.join(f'{r:.3f}' for r in ratio)}; "
        f"median {statistics.median(ratio):.3f}"
    )
    print(
        f"clusterodm CPU per request, median: direct {cpu['direct']:.1f} us, behind nginx one "
        f"{cpu['one']:.1f} us, two {cpu['two']:.1f} us (summed over both); nginx {lb_cpu['one']:.1f} / "
        f"{lb_cpu['two']:.1f} us; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--runs", type=int, default=4, help="wrk rounds of each comparison")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk round")
    parser.add_argument("--misses", type=int, default=2000, help="routes looked up for the first time")
    parser.add_argument("--only", default="1,2,3", help="which measurements (1,2,3)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    work.chmod(0o755)  # nginx workers may run as another user when started as root
    node_port = free_port()
    fields = {"dir": work, "upstream": node_port, "info": INFO, "node_info": NODE_INFO}
    node = start_nginx(work, "node", NODE_SERVER.format(**fields), [])
    postgres = PostgresServer().start()
    started: list[Replica] = []
    balancers: list[Nginx] = []
    try:
        wait_http(f"http://127.0.0.1:{node_port}/info", proc=node)
        sqlite_db = f"sqlite:///{work / 'data-sqlite' / 'clusterodm.sqlite3'}"
        pg_db = postgres.database()
        (work / "data-sqlite").mkdir()
        asyncio.run(seed(sqlite_db, work / "data-sqlite", node_port))
        asyncio.run(seed(pg_db, work, node_port))
        sqlite = Replica(work, "sqlite", sqlite_db)
        pg_a = Replica(work, "pg-a", pg_db)
        started += [sqlite, pg_a]
        sqlite.ready()
        pg_a.ready()
        pg_b = Replica(work, "pg-b", pg_db)
        started.append(pg_b)
        pg_b.ready()
        print(f"load average {os.getloadavg()[0]:.1f} at the start")
        if "1" in only:
            warm_sqlite_vs_pg(sqlite, pg_a, args.runs, args.duration)
        if "2" in only:
            cache_misses(pg_b, pg_db, args.misses)
        if "3" in only:
            balancers.append(Nginx(work, [pg_a], name="lb-one").start())
            balancers.append(Nginx(work, [pg_a, pg_b], name="lb-two").start())
            scale_out(balancers[0], balancers[1], [pg_a, pg_b], args.runs, args.duration)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        for lb in balancers:
            lb.stop()
        for replica in started:
            stop_process(replica.proc)
        stop_process(node)
        postgres.stop()
        if os.environ.get("KEEP"):
            print(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
