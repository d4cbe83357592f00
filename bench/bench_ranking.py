"""Node selection cost at 10, 1,000 and 10,000 nodes: Rust vs Python, and where node state should live.

Variants, all picking the node for a 50-image task:
* `board.choose`   - state held in Rust (`NodeBoard`), updated by the poller; one call per pick;
* `rank_nodes`     - stateless Rust: every node's row is passed on each call (marshalling included);
* `py reference`   - the comparator-based reference in tests/native/reference.py (the baseline);
* `py single-pass` - a tuned pure-Python pick (one pass, tuple keys), to be fair to Python.
Plus `board.upsert` per node, the price the health poller pays to keep the board current.
Run: `.venv/bin/python bench/bench_ranking.py` (a few seconds).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from clusterodm._native import NodeBoard, rank_nodes  # noqa: E402
from native.reference import UNLIMITED_IMAGES, Node, choose  # noqa: E402

SIZES = (10, 1_000, 10_000)
IMAGES = 50
BUDGET_S = 0.4  # per measurement


def make_rows(count: int, seed: int = 1) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        max_images = rng.choice([None, None, 0, 100, 500, 10_000])
        mpt = rng.randint(1, 4)
        queue = rng.randint(0, 5)
        online = rng.random() > 0.1
        locked = rng.random() < 0.05
        rows.append((i, online, locked, False, max_images, mpt, queue, rng.randint(0, 1), 0))
    return rows


def single_pass_choose(nodes: list[Node], image_count: int) -> Node | None:
    """Tuned Python: one pass for the best with a slot and the best overall, then bump the turn."""
    best_free = best_any = None
    max_turn = 0
    for pos, n in enumerate(nodes):
        max_turn = max(max_turn, n.turn)
        if not n.online or n.locked or n.auto_spawned:
            continue
        limit = n.max_images or UNLIMITED_IMAGES
        if limit < image_count:
            continue
        free = max(0, n.max_parallel_tasks - n.task_queue_count - n.in_transit)
        key = (limit, -free, n.task_queue_count, n.turn, pos)
        if free > 0 and (best_free is None or key < best_free[0]):
            best_free = (key, n)
        if best_any is None or key < best_any[0]:
            best_any = (key, n)
    picked = best_free or best_any
    if picked is None:
        return None
    picked[1].turn = max_turn + 1
    return picked[1]


def per_call_us(fn: Callable[[], object]) -> float:
    """Best-of-3 mean over batches sized to roughly BUDGET_S / 3 each."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    reps = max(1, int(BUDGET_S / 3 / once))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best * 1e6


def bench_size(size: int) -> None:
    rows = make_rows(size)
    board = NodeBoard()
    for r in rows:
        board.upsert(*r[:7])
        board.add_in_transit(r[0], r[7])
    ref_nodes = [Node.from_row(r) for r in rows]
    fast_nodes = [Node.from_row(r) for r in rows]
    # Both sides must agree before timing anything.
    expected = choose([Node.from_row(r) for r in rows], IMAGES)
    assert expected is not None and board.best(IMAGES) == expected.id

    def poll_all() -> None:
        for r in rows:
            board.upsert(r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    results = {
        "py reference": per_call_us(lambda: choose(ref_nodes, IMAGES)),
        "py single-pass": per_call_us(lambda: single_pass_choose(fast_nodes, IMAGES)),
        "rank_nodes": per_call_us(lambda: rank_nodes(rows, IMAGES)),
        "board.choose": per_call_us(lambda: board.choose(IMAGES)),
        "board.best": per_call_us(lambda: board.best(IMAGES)),
    }
    baseline = results["py reference"]
    for name, us in results.items():
        print(f"{size:>6} {name:>16} {us:>13.2f} {baseline / us:>13.1f}x")
    upsert_us = per_call_us(poll_all) / size
    print(f"{size:>6} {'board.upsert':>16} {upsert_us:>13.3f}  (per node per poll)")


def main() -> None:
    print(f"{'nodes':>6} {'variant':>16} {'us/selection':>13} {'py ref / this':>14}")
    for size in SIZES:
        bench_size(size)


if __name__ == "__main__":
    main()
