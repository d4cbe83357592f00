"""Proxy hot-path benchmark: clusterodm vs nginx `proxy_pass` in front of the same fast upstream.

nginx plays both parts (two processes): a trivial, fast "node" (answers /info, /task/{uuid}/info and a 1 GB
all.zip) and the reference reverse proxy. clusterodm gets the node registered and a route to
the task inserted into its store, then wrk measures routed `GET /task/{uuid}/info` through each
proxy at 64 connections, and curl downloads the 1 GB asset through each while clusterodm's
peak RSS (VmHWM) is read from /proc.

    .venv/bin/python bench/bench_proxy.py [--backends h1,pyreqwest,aiohttp] [--duration 10] [--runs 3] [--pin]
    .venv/bin/python bench/bench_proxy.py --metrics --runs 6 --duration 8   # metrics on / off

All clusterodm instances run side by side (idle while another is measured); wrk rounds alternate
nginx and each backend, so every ratio compares figures taken moments apart. `--pin` puts wrk and
the nginx node on CPU 0 and the proxy under test on CPU 1 (taskset), so nginx-as-proxy and
clusterodm get the same single core.

`h1` is clusterodm's own forwarding client; `pyreqwest` and `aiohttp` are general-purpose clients
behind the same interface, kept here for comparison only (`upstreams.py`; `pip install -e '.[bench]'`).
`h1-nometrics` is `h1` started with `--no-metrics`: `--metrics` compares the two (the cost of
counting requests and routed latency on the hot path), rounds alternating their order.

Needs /usr/sbin/nginx (Debian nginx-light) and /usr/bin/wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from clusterodm.cluster.store_sqlite import SqliteStore  # noqa: E402
from support.procs import free_port, start_process, stop_process, wait_http  # noqa: E402

T = TypeVar("T")

UUID = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11"
INFO = (
    '{"uuid":"' + UUID + '","name":"bench","dateCreated":1700000000000,"processingTime":41235,'
    '"status":{"code":20},"options":[{"name":"dsm","value":true}],"imagesCount":128,"progress":37.5}'
)
NODE_INFO = (
    '{"version":"2.2.4","taskQueueCount":0,"maxImages":null,"maxParallelTasks":4,'
    '"engineVersion":"3.5.1","engine":"odm"}'
)

NGINX_CONF = """
worker_processes 1;
error_log {dir}/error-{role}.log warn;
pid {dir}/nginx-{role}.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body-{role};
    proxy_temp_path {dir}/proxy-{role};
    fastcgi_temp_path {dir}/fcgi-{role};
    uwsgi_temp_path {dir}/uwsgi-{role};
    scgi_temp_path {dir}/scgi-{role};
    sendfile on;
    keepalive_requests 1000000;
    {servers}
}}
"""
NODE_SERVER = """
    server {{
        listen 127.0.0.1:{upstream};
        default_type application/json;
        location = /info {{ return 200 '{node_info}'; }}
        location ~ ^/task/[^/]+/info$ {{ return 200 '{info}'; }}
        location = /options {{ return 200 '[]'; }}
        location ~ ^/task/[^/]+/download/all.zip$ {{
            default_type application/zip; root {dir}; try_files /all.zip =404;
        }}
    }}
"""
PROXY_SERVER = """
    upstream node {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
"""


def wrk(url: str, connections: int, duration: int, pin: list[str]) -> tuple[float, float]:
    """(requests/s, p99 latency in ms)."""
    out = subprocess.run(
        [*pin, "/usr/bin/wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print("   wrk:", errors[0])
    return rps, float(m[1]) * scale


def download(url: str) -> float:
    """Bytes/s of one streamed download (curl, body discarded)."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if int(out[1]) < 1 << 20:
        raise RuntimeError(f"download of {url} returned only {out[1]} bytes")
    return float(out[0])


def of_kind(per_backend: dict[str, list[T]], kind: str) -> list[list[T]]:
    """The figures of every instance of `kind` (`h1~1`, `h1~2`...)."""
    return [figures for backend, figures in per_backend.items() if backend.split("~")[0] == kind]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def start_nginx(work: Path, role: str, servers: str, pin: list[str]) -> subprocess.Popen[bytes]:
    conf = work / f"nginx-{role}.conf"
    conf.write_text(NGINX_CONF.format(dir=work, role=role, servers=servers))
    return start_process(
        [*pin, "/usr/sbin/nginx", "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
        work / f"nginx-{role}.log",
    )


def start_clusterodm(
    work: Path, upstream_port: int, backend: str, pin: list[str], aa: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    data = work / f"data-{backend}"
    data.mkdir()

    async def seed() -> None:
        store = await SqliteStore.open(data / "clusterodm.sqlite3")
        node_id = await store.insert_node("127.0.0.1", upstream_port, "", False, None, 0)
        await store.put_routes([(UUID, node_id, 0, int(time.time() * 1000))])
        await store.close()

    asyncio.run(seed())
    (data / "nodes.json").write_text(f'[{{"hostname":"127.0.0.1","port":{upstream_port},"token":""}}]')
    port = free_port()
    # The built-in client is clusterodm as shipped (`h1-nometrics`: with --no-metrics); the others
    # start through bench/upstreams.py.
    # `h1~2`: a second instance of `h1`. `aa`: every instance without metrics (the noise floor).
    kind = backend.split("~")[0]
    if kind in ("h1", "h1-nometrics"):
        entry = ["-m", "clusterodm.main", *(["--no-metrics"] if kind == "h1-nometrics" or aa else [])]
    else:
        entry = [str(REPO / "bench" / "upstreams.py"), backend]
    args = [*pin, sys.executable, *entry, "--port", str(port), "--bind", "127.0.0.1"]
    args += [
        "--admin-cli-port",
        "0",
        "--admin-web-port",
        "0",
        "--data-dir",
        str(data),
        "--poll-interval",
        "5",
    ]
    args += ["--log-level", "warn"]
    # One hash seed for all: instances then differ only by what is compared (dict layouts alike).
    proc = start_process(args, work / f"clusterodm-{backend}.log", env={"PYTHONHASHSEED": "0"})
    wait_http(f"http://127.0.0.1:{port}/auth/info", proc=proc)
    deadline = time.monotonic() + 10
    while "error" in httpx.get(f"http://127.0.0.1:{port}/options").text:
        if time.monotonic() > deadline:
            raise RuntimeError("the nginx node never came online")
        time.sleep(0.1)
    return proc, port


class _InstantNode:
    """An `Upstream` answering every request at once with a small task info (no sockets)."""

    class Answer:
        status = 200
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(INFO)).encode())]
        content_length = len(INFO)

        async def read(self) -> bytes:
            return INFO.encode()

        async def aclose(self) -> None:
            pass

    async def request(self, *args: Any, **kwargs: Any) -> Answer:
        return self.Answer()

    async def close(self) -> None:
        pass


def hot_path_cost(
    work: Path, rounds: int = 40, requests: int = 5_000, aa: bool = False
) -> tuple[float, float]:
    """Microseconds per routed GET info through the ASGI front (metrics on, off; best of `rounds`
    alternating rounds), in one process:
    the Python path alone, node answering instantly, without wrk, granian or sockets around it."""
    from clusterodm.config import Config
    from clusterodm.proxy.app import create_app
    from clusterodm.services import Cluster

    async def front(enabled: bool) -> tuple[Cluster, Any]:
        data = work / ("inproc-on" if enabled else "inproc-off")
        cluster = await Cluster.open(Config(data_dir=data, metrics=enabled, log_level="error"))
        node = await cluster.registry.add("127.0.0.1", 9, "")
        assert node is not None
        await cluster.routes.add(UUID, node, None)
        return cluster, create_app(cluster, _InstantNode())  # type: ignore[arg-type]

    async def timed(app: Any) -> float:
        path = f"/task/{UUID}/info"
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode()}
        scope |= {"query_string": b"", "headers": [(b"host", b"127.0.0.1")]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            pass

        started = time.perf_counter()
        for _ in range(requests):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - started) / requests * 1e6

    async def compare() -> tuple[float, float]:
        (on_cluster, on), (off_cluster, off) = await front(not aa), await front(False)
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(rounds):
            for enabled, app in ((True, on), (False, off)) if i % 2 else ((False, off), (True, on)):
                times[enabled].append(await timed(app))
        await on_cluster.close()
        await off_cluster.close()
        # The fastest round of each: other jobs on the machine only ever add time (as timeit).
        return min(times[True]), min(times[False])

    logging.disable(logging.WARNING)  # the fake node is never polled successfully: no noise
    return asyncio.run(compare())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backends",
        default="h1,pyreqwest,aiohttp",
        help="h1 (built in), h1-nometrics (the same with --no-metrics), pyreqwest, aiohttp",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="only the metrics cost: h1 against h1-nometrics, no download (same as --backends "
        "h1,h1-nometrics --download-mb 0)",
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--download-mb", type=int, default=1024)
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="with --metrics: clusterodm processes of each kind, whose throughputs are averaged "
        "(one process can be a few %% faster than its twin for the whole run)",
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help="with --metrics: the 'on' instances run --no-metrics too, to show the noise floor",
    )
    parser.add_argument("--runs", type=int, default=1, help="wrk rounds (nginx, then each backend)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="wrk and the nginx node on CPU 0, the proxy under test (nginx or clusterodm) alone on CPU 1",
    )
    args = parser.parse_args()
    if args.metrics:
        kinds = [f"{kind}~{i}" for i in range(1, args.instances + 1) for kind in ("h1", "h1-nometrics")]
        args.backends, args.download_mb = ",".join(kinds), 0
    load_cpu, proxy_cpu = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if args.pin else ([], [])
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    work.chmod(0o755)  # nginx workers may run as another user when started as root
    upstream, proxy = free_port(), free_port()
    with (work / "all.zip").open("wb") as f:  # real bytes, so the page cache serves them
        block = os.urandom(1 << 20)
        for _ in range(args.download_mb):
            f.write(block)
    (work / "all.zip").chmod(0o644)
    fields = {"dir": work, "upstream": upstream, "proxy": proxy, "info": INFO, "node_info": NODE_INFO}
    node = start_nginx(work, "node", NODE_SERVER.format(**fields), load_cpu)
    nginx = start_nginx(work, "proxy", PROXY_SERVER.format(**fields), proxy_cpu)
    backends = args.backends.split(",")
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    cpu_us: dict[str, list[float]] = {b: [] for b in backends}
    """CPU microseconds the proxy spent per request, per round: steadier than throughput when
    other jobs share the cores."""
    results: dict[str, list[tuple[float, float]]] = {"nginx": [], **{b: [] for b in backends}}
    path = f"/task/{UUID}/info"
    try:
        wait_http(f"http://127.0.0.1:{upstream}/info", proc=node)
        wait_http(f"http://127.0.0.1:{proxy}/info", proc=nginx)
        for backend in backends:
            procs[backend] = start_clusterodm(work, upstream, backend, proxy_cpu, args.aa)
        for run in range(1, args.runs + 1):
            n_rps, n_p99 = wrk(f"http://127.0.0.1:{proxy}{path}", args.connections, args.duration, load_cpu)
            results["nginx"].append((n_rps, n_p99))
            print(f"run {run}: nginx proxy_pass {n_rps:9.0f} req/s  p99 {n_p99:7.2f} ms")
            # Every other round in reverse order, so no backend always runs right after nginx.
            order = list(procs.items()) if run % 2 else list(reversed(procs.items()))
            for backend, (proc, port) in order:
                cpu = cpu_seconds(proc.pid)
                rps, p99 = wrk(f"http://127.0.0.1:{port}{path}", args.connections, args.duration, load_cpu)
                cpu_us[backend].append((cpu_seconds(proc.pid) - cpu) / (rps * args.duration) * 1e6)
                results[backend].append((rps, p99))
                print(
                    f"run {run}: clusterodm[{backend}] {rps:9.0f} req/s ({rps / n_rps:5.1%} of nginx)  "
                    f"p99 {p99:7.2f} ms ({p99 / n_p99:4.1f}x nginx)  CPU {cpu_us[backend][-1]:5.1f} us/req"
                )
        n_dl = download(f"http://127.0.0.1:{proxy}/task/{UUID}/download/all.zip") if args.download_mb else 0
        if n_dl:
            print(f"download: nginx proxy_pass {n_dl / 1e6:7.0f} MB/s")
        for backend, (proc, port) in procs.items() if n_dl else ():
            rss_before = vm_hwm_kb(proc.pid)
            dl = download(f"http://127.0.0.1:{port}/task/{UUID}/download/all.zip")
            rss_after = vm_hwm_kb(proc.pid)
            print(
                f"download: clusterodm[{backend}] {dl / 1e6:7.0f} MB/s ({dl / n_dl:5.1%} of nginx)  "
                f"peak RSS {rss_before // 1024} MB -> {rss_after // 1024} MB"
            )
        print("summary (routed GET info, per run, same-run ratios against nginx):")
        for backend in backends:
            ratios = [
                f"{r / n:.0%} / {p / q:.1f}x"
                for (r, p), (n, q) in zip(results[backend], results["nginx"], strict=True)
            ]
            print(f"  {backend}: throughput / p99 = {', '.join(ratios)}")
        if args.metrics:
            on_off = []
            for run in range(args.runs):
                on_rps = [rounds[run][0] for rounds in of_kind(results, "h1")]
                off_rps = [rounds[run][0] for rounds in of_kind(results, "h1-nometrics")]
                on_off.append(statistics.mean(on_rps) / statistics.mean(off_rps))
            figures = ", ".join(f"{r:.3f}" for r in on_off)
            median = statistics.median(on_off)
            best_on = max(max(r for r, _ in rounds) for rounds in of_kind(results, "h1"))
            best_off = max(max(r for r, _ in rounds) for rounds in of_kind(results, "h1-nometrics"))
            print(f"best round: on {best_on:.0f} req/s, off {best_off:.0f} req/s: {best_on / best_off:.3f}")
            label = "A/A, both without metrics" if args.aa else "h1 / h1-nometrics"
            print(f"metrics on / off ({label}, throughput per round): {figures}; median {median:.3f}")
            on = statistics.median(v for values in of_kind(cpu_us, "h1") for v in values)
            off = statistics.median(v for values in of_kind(cpu_us, "h1-nometrics") for v in values)
            print(
                f"CPU per request, median of the rounds: on {on:.1f} us, off {off:.1f} us; "
                f"throughput at equal CPU, on / off: {off / on:.3f}"
            )
            py_on, py_off = hot_path_cost(work, aa=args.aa)
            print(
                f"in-process ASGI front, routed GET info, node answering at once: on {py_on:.2f} us, "
                f"off {py_off:.2f} us per request (+{py_on - py_off:.2f} us, {py_on / py_off - 1:.1%})"
            )
    finally:
        for proc, _ in procs.values():
            stop_process(proc)
        stop_process(nginx)
        stop_process(node)
        shutil.rmtree(work, ignore_errors=True) if not os.environ.get("KEEP") else print(work)


if __name__ == "__main__":
    main()
