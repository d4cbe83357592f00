"""Route table: memory per route and cost of a lookup, Rust `RouteTable` vs a dict of slotted objects.

Each (variant, size) runs in a fresh interpreter so RSS deltas are not polluted by earlier runs.
Lookups use freshly created strings (as a request path would give), in random order, and report
the best of a few passes. Run: `.venv/bin/python bench/bench_routes.py` (about 20-40 s).
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

SIZES = (100_000, 1_000_000)
LOOKUPS = 200_000
PASSES = 3
NOW_MS = 1_700_000_000_000


@dataclass(slots=True)
class Route:
    node_id: int
    owner_id: int
    accessed_ms: int


class PyRouteTable:
    """The baseline: what the route table would be in plain Python (no uuid validation)."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def insert(self, uuid: str, node_id: int, owner_id: int, accessed_ms: int) -> None:
        self._routes[uuid] = Route(node_id, owner_id, accessed_ms)

    def get(self, uuid: str, now_ms: int | None = None) -> tuple[int, int, int] | None:
        route = self._routes.get(uuid)
        if route is None:
            return None
        route.accessed_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        return (route.node_id, route.owner_id, route.accessed_ms)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


def child(variant: str, size: int) -> dict[str, float]:
    from clusterodm._native import RouteTable

    table = RouteTable() if variant == "rust" else PyRouteTable()
    rng = random.Random(42)
    gc.collect()
    before = rss_bytes()
    for i in range(size):
        table.insert(str(uuid.UUID(int=rng.getrandbits(128))), i % 64, i % 1000, NOW_MS + i)
    gc.collect()
    bytes_per_route = (rss_bytes() - before) / size

    # Regenerate a sample of the same ids as new string objects (no cached hash, not the key itself).
    rng = random.Random(42)
    step = max(1, size // LOOKUPS)
    sample = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(size)][::step]
    random.Random(7).shuffle(sample)
    get = table.get
    best = float("inf")
    for _ in range(PASSES):
        queries = [s[:18] + s[18:] for s in sample]
        start = time.perf_counter_ns()
        for q in queries:
            get(q, NOW_MS)
        best = min(best, (time.perf_counter_ns() - start) / len(queries))
    assert get(sample[0], NOW_MS) is not None
    return {"bytes_per_route": bytes_per_route, "ns_per_get": best}


def run(variant: str, size: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(size)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def main() -> None:
    print(f"{'routes':>9} {'variant':>8} {'bytes/route':>12} {'ns/get':>8}")
    for size in SIZES:
        results = {variant: run(variant, size) for variant in ("python", "rust")}
        for variant, r in results.items():
            print(f"{size:>9} {variant:>8} {r['bytes_per_route']:>12.1f} {r['ns_per_get']:>8.0f}")
        py, rs = results["python"], results["rust"]
        print(
            f"{size:>9} {'ratio':>8} {py['bytes_per_route'] / rs['bytes_per_route']:>11.2f}x"
            f" {py['ns_per_get'] / rs['ns_per_get']:>7.2f}x   (python / rust; >1 means Rust is better)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
