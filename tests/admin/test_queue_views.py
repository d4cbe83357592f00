"""How the proxy's task queue looks to operators: `QUEUE LIST` lines and `/r/queue/list` rows
(order, state, images, waited time; never the owner)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from clusterodm.admin.views import queue_line, queue_order, queue_public
from clusterodm.cluster.node import Node
from clusterodm.cluster.store import QueuedTask
from support.admin_env import QUEUE_TOKEN, Cli, QueueEnv, start_queue_env

NOW = 1_700_000_000_000
A = "a0000000-0000-4000-8000-000000000001"
B = "b0000000-0000-4000-8000-000000000002"
C = "c0000000-0000-4000-8000-000000000003"
D = "d0000000-0000-4000-8000-000000000004"


def queued(
    uuid: str,
    seq: int,
    *,
    owner: int = 1,
    waited_s: float = 0,
    node: int | None = None,
    started: bool = False,
) -> QueuedTask:
    return QueuedTask(
        uuid=uuid,
        owner_id=owner,
        replica_id="r1",
        node_files=seq + 2,
        images=seq + 1,
        max_concurrent=None,
        enqueued_ms=NOW - int(waited_s * 1000),
        seq=seq,
        tag=seq,
        node_id=node,
        started=started,
    )


NODES = {7: Node(7, "10.0.0.5", 3000, token="secret-node-token")}


def test_tasks_given_a_node_come_first_then_waiting_ones_by_position() -> None:
    queue = [
        queued(A, 1, waited_s=30),
        queued(B, 2, node=9),  # a node removed since: no name
        queued(C, 3, node=7, started=True),
        queued(D, 4, waited_s=5),
    ]
    rows = queue_order(queue, NODES.get)
    assert [(p, task.uuid, node) for p, task, node in rows] == [
        (None, B, None),
        (None, C, "10.0.0.5:3000"),
        (1, A, None),
        (2, D, None),
    ]
    lines = [queue_line(p, task, NOW, node) for p, task, node in rows]
    assert lines == [
        f"-) {B} [assigned] 3 images, waited 0 s -> ?",
        f"-) {C} [sending] 4 images, waited 0 s -> 10.0.0.5:3000",
        f"1) {A} [waiting] 2 images, waited 30 s",
        f"2) {D} [waiting] 5 images, waited 5 s",
    ]


def test_waited_time_reads_in_minutes_and_hours() -> None:
    assert queue_line(1, queued(A, 1, waited_s=185), NOW, None).endswith("waited 3 min 5 s")
    assert queue_line(1, queued(A, 1, waited_s=2 * 3600 + 61), NOW, None).endswith("waited 2 h 1 min")


def test_web_rows_carry_no_owner() -> None:
    row = queue_public(2, queued(A, 1, owner=42, waited_s=12.5), NOW, None)
    assert row == {
        "position": 2,
        "uuid": A,
        "images": 2,
        "enqueuedAt": NOW - 12_500,
        "waitedMs": 12_500,
        "state": "waiting",
        "node": None,
    }


@pytest.fixture(scope="module")
def queue_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueEnv]:
    env = start_queue_env(tmp_path_factory.mktemp("queue-views"))
    try:
        yield env
    finally:
        env.cluster.stop()
        env.sim.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_queue_list_and_its_json_show_the_waiting_tasks_in_order(queue_env: QueueEnv) -> None:
    """`QUEUE LIST` (telnet) and `/r/queue/list` (admin web) list the tasks waiting at the proxy by
    position, with images and waited time and no owner; a cancelled task leaves both at once."""
    env = queue_env
    running, first, second = env.uuids
    cli = Cli(env.cluster.host, env.cluster.admin_cli_port)
    try:
        cli.greeting()
        assert any(line.startswith("QUEUE LIST - ") for line in cli.command("HELP"))
        # The first task's forward may still be on its way to the node: then it is listed first.
        wait_for(lambda: len(cli.command("QUEUE LIST")) == 3, "the running task to leave the queue")
        lines = cli.command("QUEUE LIST")
        assert len(lines) == 3 and lines[2] == "", lines
        assert re.fullmatch(rf"1\) {first} \[waiting\] 5 images, waited \d+ s", lines[0]), lines
        assert re.fullmatch(rf"2\) {second} \[waiting\] 6 images, waited \d+ s", lines[1]), lines
        assert [line.split(", waited")[0] for line in cli.command("queue list")] == [
            line.split(", waited")[0] for line in lines
        ]

        rows = httpx.get(f"{env.cluster.admin_url}/r/queue/list", timeout=5).json()
        assert [(r["position"], r["uuid"], r["images"], r["state"]) for r in rows] == [
            (1, first, 5, "waiting"),
            (2, second, 6, "waiting"),
        ]
        assert all(r["node"] is None and 0 <= r["waitedMs"] < 120_000 for r in rows)
        text = httpx.get(f"{env.cluster.admin_url}/r/queue/list", timeout=5).text
        assert QUEUE_TOKEN not in text and "owner" not in text.lower()
        assert running not in text  # it has its node's slot: not in the queue

        cancel = httpx.post(f"{env.cluster.url}/task/cancel?token={QUEUE_TOKEN}", data={"uuid": first}).json()
        assert cancel == {"success": True}, cancel
        lines = cli.command("QUEUE LIST")
        assert len(lines) == 2 and re.fullmatch(rf"1\) {second} \[waiting\] 6 images, waited \d+ s", lines[0])
        rows = httpx.get(f"{env.cluster.admin_url}/r/queue/list", timeout=5).json()
        assert [(r["position"], r["uuid"]) for r in rows] == [(1, second)]
    finally:
        cli.close()
