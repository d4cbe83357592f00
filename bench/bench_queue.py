"""Task queue at the proxy against ClusterODM's manner (each task sent at once, the node queues it).

One seeded workload: 60 tasks, one in five long, submitted in bursts (a group of tasks at nearly the
same moment, then a pause), on three simulator nodes with one slot each (`-q 1`, NodeODM's
maxParallelTasks 1). A task's length comes from its name (`sim-seconds=N`, a simulator-only
marker). The same workload runs twice in this process tree, each time on fresh nodes and a fresh
clusterodm: with the proxy queue (clusterodm's default), then in ClusterODM's manner (`--no-queue`
when this clusterodm has it; before the queue existed, its only behaviour). The client is PyODM's
pattern (init, upload, commit) and polls each committed task's info through the proxy, as WebODM
does.

A task's wait is from its commit to the moment its node starts processing it; the start is read
from `processingTime`, which the nodes report to the millisecond (`--processing-time-tick 0`), so
it does not depend on how often the client polls. The makespan is from the first submission to the
end of the last task. Printed per mode: makespan, mean and p95 wait, tasks refused or failed, and
the ratios queue / ClusterODM's manner. Targets: makespan <= 0.9x and p95 wait <= 0.7x, no task
refused.

Run: `.venv/bin/python bench/bench_queue.py [--scale 0.5] [--seed 1]` (about 3 minutes at scale
1; `--scale` multiplies every duration: task lengths, burst gaps, poll interval).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clusterodm import ClusterODM  # noqa: E402
from support.simnode import SimNode  # noqa: E402

NODES = 3
IMAGES = 2
UPLOAD_WORKERS = 16
FINISHED = {30: "failed", 40: "completed", 50: "canceled"}


@dataclass(frozen=True)
class Spec:
    """One task of the workload: when it is submitted (s after the start) and how long it runs."""

    index: int
    at: float
    seconds: float

    @property
    def name(self) -> str:
        return f"bench-{self.index:02d} sim-seconds={self.seconds:g}"


@dataclass
class Outcome:
    spec: Spec
    uuid: str | None = None
    committed: float | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None

    @property
    def wait(self) -> float | None:
        if self.committed is None or self.started is None:
            return None
        return max(0.0, self.started - self.committed)


@dataclass
class Run:
    mode: str
    outcomes: list[Outcome] = field(default_factory=list)
    t0: float = 0.0

    def waits(self) -> list[float]:
        return [w for o in self.outcomes if (w := o.wait) is not None]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def makespan(self) -> float:
        ends = [o.ended for o in self.outcomes if o.ended is not None]
        return max(ends) - self.t0 if ends else float("nan")


def workload(args: argparse.Namespace) -> list[Spec]:
    """`tasks` tasks, exactly one in five long, shuffled by the seed; `burst` tasks per burst,
    spread over the first half second of it (a user or a script sending a batch)."""
    rng = random.Random(args.seed)
    longs = args.tasks // 5
    lengths = [args.long] * longs + [args.short] * (args.tasks - longs)
    rng.shuffle(lengths)
    specs = []
    for i, seconds in enumerate(lengths):
        at = (i // args.burst) * args.burst_gap + rng.uniform(0, 0.5)
        specs.append(Spec(i, round(at * args.scale, 3), round(seconds * args.scale, 3)))
    return sorted(specs, key=lambda s: s.at)


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def has_no_queue_flag() -> bool:
    """Whether this clusterodm offers `--no-queue` (the proxy queue's off switch)."""
    out = subprocess.run(
        [sys.executable, "-m", "clusterodm.main", "--help"], capture_output=True, text=True, timeout=60
    )
    return "--no-queue" in out.stdout


def submit(url: str, outcome: Outcome, images: list[tuple[str, bytes]]) -> None:
    """PyODM's pattern: init, upload, commit; any `error` answer counts the task as refused."""
    try:
        with httpx.Client(timeout=120) as client:
            init = client.post(f"{url}/task/new/init", files={"name": (None, outcome.spec.name)}).json()
            if "uuid" not in init:
                outcome.error = f"init: {init}"
                return
            uuid = init["uuid"]
            files = [("images", (name, data)) for name, data in images]
            upload = client.post(f"{url}/task/new/upload/{uuid}", files=files).json()
            if upload != {"success": True}:
                outcome.error = f"upload: {upload}"
                return
            commit = client.post(f"{url}/task/new/commit/{uuid}").json()
            if commit.get("uuid") != uuid:
                outcome.error = f"commit: {commit}"
                return
            outcome.committed = time.monotonic()
            outcome.uuid = uuid
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"


def observe(outcome: Outcome, info: dict[str, object], at: float) -> bool:
    """Read a task info answer taken at `at`; True once the task has finished."""
    status = info.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    elapsed = info.get("processingTime")
    if code == 20 and isinstance(elapsed, int) and elapsed > 0 and outcome.started is None:
        outcome.started = at - elapsed / 1000
    if code in FINISHED:
        if code != 40:
            outcome.error = f"{FINISHED[code]}: {status}"
        if isinstance(elapsed, int) and elapsed >= 0:
            if outcome.started is None:  # never seen running (shorter than a client poll)
                outcome.started = at - elapsed / 1000
            outcome.ended = outcome.started + elapsed / 1000
        else:
            outcome.ended = at
        return True
    if "error" in info:
        outcome.error = f"info: {info['error']}"
        return True
    return False


def poll_until_done(url: str, outcomes: list[Outcome], submitted: threading.Event, every: float) -> None:
    """Sweep the committed, unfinished tasks' info over one kept-alive connection."""
    done: set[int] = set()
    with httpx.Client(timeout=30) as client:
        while True:
            sweep = time.monotonic()
            for o in outcomes:
                if o.spec.index in done:
                    continue
                if o.error:
                    done.add(o.spec.index)
                    continue
                if o.uuid is None:
                    continue
                info = client.get(f"{url}/task/{o.uuid}/info").json()
                if observe(o, info, time.monotonic()):
                    done.add(o.spec.index)
            if submitted.is_set() and len(done) == len(outcomes):
                return
            time.sleep(max(0.0, every - (time.monotonic() - sweep)))


def run_mode(mode: str, flags: list[str], specs: list[Spec], args: argparse.Namespace, work: Path) -> Run:
    """Fresh nodes and a fresh clusterodm; submit every task at its time; wait until all end."""
    sim_flags = ["-q", "1", "--processing-time-tick", "0", "--asset-size", "20000"]
    nodes = [SimNode(work, *sim_flags, name=f"{mode}-node{i}") for i in range(NODES)]
    run = Run(mode, [Outcome(s) for s in specs])
    images = [(f"IMG_{i}.JPG", b"\xff\xd8" + bytes(2048)) for i in range(IMAGES)]
    poll_interval = str(max(0.05, args.poll_interval * args.scale))
    try:
        for node in nodes:
            node.start()
        with ClusterODM(
            work, *flags, nodes=nodes, name=f"{mode}-clusterodm", poll_interval=float(poll_interval)
        ) as proxy:
            proxy.wait_online(NODES)
            submitted = threading.Event()
            poller = threading.Thread(
                target=poll_until_done, args=(proxy.url, run.outcomes, submitted, args.client_poll)
            )
            run.t0 = time.monotonic()
            poller.start()
            with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
                for outcome in run.outcomes:
                    time.sleep(max(0.0, run.t0 + outcome.spec.at - time.monotonic()))
                    pool.submit(submit, proxy.url, outcome, images)
            submitted.set()
            poller.join()
    finally:
        for node in nodes:
            node.stop()
    return run


def report(runs: list[Run]) -> None:
    print(f"{'mode':<36} {'makespan s':>10} {'mean wait s':>11} {'p95 wait s':>10} {'refused/failed':>14}")
    for run in runs:
        waits = run.waits()
        mean = statistics.mean(waits) if waits else float("nan")
        print(
            f"{run.mode:<36} {run.makespan:>10.1f} {mean:>11.2f} {p95(waits):>10.2f} {len(run.refused):>14}"
        )
        for o in run.refused[:5]:
            print(f"    {o.spec.name}: {o.error}")
    if len(runs) == 2:
        queue, baseline = runs
        qw, bw = queue.waits(), baseline.waits()
        print(
            f"ratio queue / ClusterODM's manner: makespan {queue.makespan / baseline.makespan:.2f}x"
            f" (target <= 0.9), mean wait {statistics.mean(qw) / statistics.mean(bw):.2f}x,"
            f" p95 wait {p95(qw) / p95(bw):.2f}x (target <= 0.7)"
        )


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Proxy task queue against ClusterODM's manner.")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--tasks", type=int, default=60, help="tasks in the workload (default 60)")
    p.add_argument("--short", type=float, default=1.0, help="short task length, s (default 1)")
    p.add_argument("--long", type=float, default=12.0, help="long task length, s (default 12)")
    p.add_argument("--burst", type=int, default=12, help="tasks per burst (default 12)")
    p.add_argument("--burst-gap", type=float, default=12.0, help="s between bursts (default 12)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="clusterodm's node poll, s (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every duration above (default 1)")
    p.add_argument("--client-poll", type=float, default=0.25, help="s between task-info sweeps (0.25)")
    p.add_argument("--modes", default="queue,clusterodm", help="which runs, in order (default both)")
    return p.parse_args()


def main() -> None:
    args = arguments()
    specs = workload(args)
    longs = sum(1 for s in specs if s.seconds == round(args.long * args.scale, 3))
    work_s = sum(s.seconds for s in specs)
    print(
        f"workload: {len(specs)} tasks ({longs} long), seed {args.seed}, {work_s:.0f} s of processing on "
        f"{NODES} one-slot nodes (>= {work_s / NODES:.0f} s makespan), bursts of {args.burst}"
    )
    no_queue = has_no_queue_flag()
    modes = {
        "queue": ("queue (default)", []),
        "clusterodm": (
            "ClusterODM's manner" + ("" if no_queue else " (no queue yet)"),
            ["--no-queue"] if no_queue else [],
        ),
    }
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        for key in args.modes.split(","):
            label, flags = modes[key]
            start = time.monotonic()
            runs.append(run_mode(key, flags, specs, args, Path(tmp)))
            runs[-1].mode = label
            print(f"  {label}: ran in {time.monotonic() - start:.0f} s", flush=True)
    report(runs)


if __name__ == "__main__":
    main()
