"""The task queue at the proxy (issue 14): tasks wait at clusterodm until a node has a free slot.

Real processes over loopback: one-slot simulator nodes behind a clusterodm; a watcher samples
the nodes' own queues and every task's info while the tasks run.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clusterodm.cluster.tasks import LocalTask
from clusterodm.config import Config
from clusterodm.pipeline import HARD_CAP_S, NO_NODE_ONLINE
from clusterodm.services import Cluster
from pipeline.flow import tmp_entries
from support.admin_env import Cli, wait_for_cli
from support.clusterodm import ClusterODM
from support.images import make_images
from support.metrics import scrape, value
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]

ONE_SLOT = ("--parallel-tasks", "1", "--processing-seconds", "0.6", "--processing-time-tick", "0")
POSITION = re.compile(r"^Waiting for a free node: position (\d+) of (\d+)$")
QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50


def create(
    cluster: ClusterODM,
    images: list[str],
    name: str = "",
    token: str = "",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """init, upload, commit as PyODM does; the commit's answer (or the first error)."""
    params = {"token": token} if token else {}
    fields = [("name", (None, name))]  # multipart, as PyODM sends it
    if options:
        listed = [{"name": k, "value": v} for k, v in options.items()]
        fields.append(("options", (None, json.dumps(listed))))
    init = httpx.post(f"{cluster.url}/task/new/init", files=fields, params=params).json()
    if "uuid" not in init:
        return dict(init)
    uuid = init["uuid"]
    files = [("images", (Path(p).name, Path(p).read_bytes())) for p in images]
    upload = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=files, params=params).json()
    if upload != {"success": True}:
        return dict(upload)
    return dict(httpx.post(f"{cluster.url}/task/new/commit/{uuid}", params=params).json())


def info(cluster: ClusterODM, uuid: str, token: str = "") -> dict[str, Any]:
    params = {"with_output": "0", **({"token": token} if token else {})}
    return dict(httpx.get(f"{cluster.url}/task/{uuid}/info", params=params, timeout=10).json())


class Watcher:
    """Samples every node's task count, and each task's info (with output) in a thread of its
    own (so a short wait in the queue is seen), until stopped."""

    def __init__(self, cluster: ClusterODM, nodes: list[SimNode], uuids: list[str], token: str = "") -> None:
        self.cluster, self.nodes, self.uuids, self.token = cluster, nodes, uuids, token
        self.most_on_a_node = 0
        self.positions: dict[str, list[int]] = {}
        self.statuses: dict[str, list[int]] = {}
        self.started: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)]

    def __enter__(self) -> Watcher:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                for uuid in list(self.uuids):  # the list may grow while it is watched
                    if uuid not in self.statuses:
                        self.positions[uuid], self.statuses[uuid] = [], []
                        thread = threading.Thread(target=self._watch, args=(uuid,), daemon=True)
                        self._threads.append(thread)
                        thread.start()
                for node in self.nodes:
                    count = client.get(f"{node.url}/info").json()["taskQueueCount"]
                    self.most_on_a_node = max(self.most_on_a_node, count)
                time.sleep(0.01)

    def _watch(self, uuid: str) -> None:
        params = {"with_output": "0", **({"token": self.token} if self.token else {})}
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                answer = client.get(f"{self.cluster.url}/task/{uuid}/info", params=params).json()
                code = answer.get("status", {}).get("code")
                if code is None:
                    continue
                if not self.statuses[uuid] or self.statuses[uuid][-1] != code:
                    self.statuses[uuid].append(code)
                if code != QUEUED and uuid not in self.started:
                    self.started[uuid] = time.monotonic()
                for line in answer.get("output", [])[-1:]:
                    match = POSITION.match(line)
                    if match and code == QUEUED:
                        position = int(match.group(1))
                        if not self.positions[uuid] or self.positions[uuid][-1] != position:
                            self.positions[uuid].append(position)
                if code in (COMPLETED, FAILED, CANCELED):
                    return
                time.sleep(0.02)

    def all_done(self) -> bool:
        return len(self.statuses) == len(self.uuids) and all(
            s and s[-1] in (COMPLETED, FAILED, CANCELED) for s in self.statuses.values()
        )


def test_ten_tasks_on_three_one_slot_nodes_all_complete_one_at_a_time_per_node(
    stack: Stack, tmp_path: Path
) -> None:
    nodes, cluster = stack(node_flags=[ONE_SLOT] * 3)
    images = make_images(tmp_path / "imgs", 2)
    uuids: list[str] = []
    with Watcher(cluster, nodes, uuids) as watcher:
        for i in range(10):
            # The first three run while the others queue up; then lengths that differ, so that
            # nodes seldom free up at the same moment.
            seconds = 8 + i if i < 3 else 0.8 + 0.3 * (i % 4)
            answer = create(cluster, images, name=f"t{i} sim-seconds={seconds}")
            assert "uuid" in answer, answer
            uuids.append(answer["uuid"])
        answers = [info(cluster, u) for u in reversed(uuids)]
        waiting = next(a for a in answers if a["status"]["code"] == QUEUED)  # three run at a time
        last = waiting["uuid"]
        assert waiting["status"] == {"code": QUEUED}
        assert (waiting["imagesCount"], waiting["processingTime"]) == (2, 0)
        assert isinstance(waiting["dateCreated"], int) and waiting["uuid"] == last
        assert POSITION.match(waiting["output"][-1]), waiting["output"]
        listed = {t["uuid"] for t in httpx.get(f"{cluster.url}/task/list").json()}
        assert set(uuids) <= listed
        wait_until(watcher.all_done, 60, "every task done")
    assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
    assert watcher.most_on_a_node == 1  # no node ever had a task waiting in its own queue
    queued = [u for u in uuids if watcher.statuses[u][0] == QUEUED]
    assert len(queued) >= 5, watcher.statuses  # 7 wait unless creating them is slower than running 3
    assert all(watcher.positions[u] for u in queued)
    for uuid in queued:
        seen = watcher.positions[uuid]
        # Positions only fall; the last one seen is 1, unless slots freed in the same instant
        # sent the first tasks of the queue at once (then a task leaves from position 2 or 3).
        assert seen == sorted(seen, reverse=True) and seen[-1] <= 3, (uuid, seen)
    assert sum(1 for u in queued if watcher.positions[u][-1] == 1) >= len(queued) // 2, watcher.positions
    wait_until(lambda: not tmp_entries(cluster), 10, "tmp emptied")


def test_two_tokens_take_turns(stack: Stack, tmp_path: Path) -> None:
    """A second token's tasks are interleaved with the first's, not put behind all of them."""
    slow = ("--parallel-tasks", "1", "--processing-seconds", "0.4", "--processing-time-tick", "0")
    nodes, cluster = stack(node_flags=[slow])
    images = make_images(tmp_path / "imgs", 1)
    first = [create(cluster, images, name="a0 sim-seconds=4", token="alice")["uuid"]]  # the queue builds up
    first += [create(cluster, images, name=f"a{i}", token="alice")["uuid"] for i in range(1, 4)]
    second = [create(cluster, images, name=f"b{i}", token="bob")["uuid"] for i in range(2)]
    uuids = first + second
    with Watcher(cluster, nodes, uuids) as watcher:
        wait_until(lambda: len(watcher.started) == len(uuids), 60, "every task started")
    order = sorted(uuids, key=lambda u: watcher.started[u])
    owners = ["a" if u in first else "b" for u in order]
    # a0 runs at once; then the queue alternates: a1 b0 a2 b1 a3
    assert owners == ["a", "a", "b", "a", "b", "a"], owners


def test_cancel_and_remove_of_queued_tasks_are_immediate(stack: Stack, tmp_path: Path) -> None:
    slow = ("--parallel-tasks", "1", "--processing-seconds", "3", "--processing-time-tick", "0")
    nodes, cluster = stack(node_flags=[slow])
    images = make_images(tmp_path / "imgs", 2)
    running, cancelled, removed, last = (create(cluster, images, name=f"t{i}")["uuid"] for i in range(4))
    assert info(cluster, cancelled)["status"]["code"] == QUEUED
    assert info(cluster, last)["output"][-1] == "Waiting for a free node: position 3 of 3"
    assert {cancelled, removed, last} <= set(tmp_entries(cluster))
    metrics = f"{cluster.admin_url}/metrics"
    wait_until(lambda: value(scrape(metrics), "clusterodm_queue_length", queue="proxy") == 3, 5, "metric")
    reply = httpx.post(f"{cluster.url}/task/cancel", data={"uuid": cancelled}).json()
    assert reply == {"success": True}
    assert info(cluster, cancelled)["status"]["code"] == CANCELED
    assert httpx.post(f"{cluster.url}/task/remove", data={"uuid": removed}).json() == {"success": True}
    assert "error" in info(cluster, removed)
    assert cancelled not in tmp_entries(cluster) and removed not in tmp_entries(cluster)
    wait_until(lambda: info(cluster, last)["output"][-1] == "Waiting for a free node: position 1 of 1", 5)
    wait_until(lambda: info(cluster, last)["status"]["code"] == COMPLETED, 30, "the last task done")
    assert info(cluster, cancelled)["status"]["code"] == CANCELED  # never dispatched
    assert nodes[0].upload_requests(cancelled) == []
    samples = scrape(metrics)
    assert value(samples, "clusterodm_queue_length", queue="proxy") == 0
    assert value(samples, "clusterodm_queue_wait_seconds_count", queue="proxy") == 1  # only the last waited


def test_restart_keeps_the_queue_and_its_order(stack: Stack, tmp_path: Path) -> None:
    slow = ("--parallel-tasks", "1", "--processing-seconds", "0.5", "--processing-time-tick", "0")
    nodes, cluster = stack(node_flags=[slow])
    images = make_images(tmp_path / "imgs", 2)
    uuids = [create(cluster, images, name="long sim-seconds=60")["uuid"]]
    uuids += [create(cluster, images, name=f"t{i}")["uuid"] for i in range(5)]
    assert [info(cluster, u)["status"]["code"] for u in uuids[1:]] == [QUEUED] * 5
    cluster.stop()
    cluster.start(wait_nodes=1)
    assert [info(cluster, u)["output"][-1] for u in uuids[1:]] == [
        f"Waiting for a free node: position {i} of 5" for i in range(1, 6)
    ]
    with Watcher(cluster, nodes, uuids[1:]) as watcher:
        wait_until(lambda: len(watcher.statuses) == 5, 5, "all watched")
        assert httpx.post(f"{cluster.url}/task/cancel", data={"uuid": uuids[0]}).json() == {"success": True}
        wait_until(watcher.all_done, 60, "every task done")
    assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
    order = sorted(uuids[1:], key=lambda u: watcher.started[u])
    assert order == uuids[1:], (uuids, watcher.started, cluster.log()[-4000:])
    assert watcher.most_on_a_node == 1


def test_max_queue_hours_fails_a_task_that_waited_too_long(stack: Stack, tmp_path: Path) -> None:
    slow = ("--parallel-tasks", "1", "--processing-seconds", "5", "--processing-time-tick", "0")
    nodes, cluster = stack("--max-queue-hours", "0.0003", node_flags=[slow])  # about 1 s
    images = make_images(tmp_path / "imgs", 2)
    create(cluster, images)
    waiting = create(cluster, images)["uuid"]
    failed = wait_until(lambda: (a := info(cluster, waiting))["status"]["code"] == FAILED and a, 10)
    assert isinstance(failed, dict)
    assert "waited 0.0003 hours for a free node (--max-queue-hours)" in failed["status"]["errorMessage"]
    assert "--max-queue-hours" in failed["output"][-1]
    wait_until(lambda: waiting not in tmp_entries(cluster), 5, "its files deleted")


def test_a_token_at_its_concurrency_limit_waits_instead_of_being_refused(
    stack: Stack, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"maxConcurrentTasks": 1}))
    fast = ("--parallel-tasks", "2", "--processing-seconds", "0.8", "--processing-time-tick", "0")
    nodes, cluster = stack("--limits", str(limits), node_flags=[fast])
    images = make_images(tmp_path / "imgs", 2)
    uuids = [create(cluster, images, name="first sim-seconds=4")["uuid"]]
    uuids += [create(cluster, images)["uuid"] for _ in range(2)]
    assert info(cluster, uuids[1])["status"]["code"] == QUEUED  # a free slot, but the token is at its limit
    with Watcher(cluster, nodes, uuids) as watcher:
        wait_until(watcher.all_done, 30, "every task done")
    assert all(s[-1] == COMPLETED for s in watcher.statuses.values())
    assert watcher.most_on_a_node == 1  # one at a time, though the node has two slots


def test_a_task_no_node_could_ever_take_is_refused_at_commit(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack(node_flags=[(*ONE_SLOT, "--max-images", "3")])
    images = make_images(tmp_path / "imgs", 4)
    answer = create(cluster, images)
    assert "No nodes available" in answer["error"] and "largest limit among the nodes is 3" in answer["error"]


def upload(cluster: ClusterODM, images: list[str]) -> str:
    """init and upload, not committed: the upload's uuid."""
    uuid = str(httpx.post(f"{cluster.url}/task/new/init", files=[("name", (None, "x"))]).json()["uuid"])
    files = [("images", (Path(p).name, Path(p).read_bytes())) for p in images]
    assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=files).json() == {"success": True}
    return uuid


def no_node_online(cluster: ClusterODM) -> bool:
    return "error" in httpx.get(f"{cluster.url}/options").json()


def test_tasks_wait_while_every_node_looks_offline(stack: Stack, tmp_path: Path) -> None:
    """Every node can look offline for a while (restarting, or unpolled during a database
    outage): init and commit then go on against the nodes' last known options, and the tasks
    wait in the queue until a node is back."""
    nodes, cluster = stack(node_flags=[ONE_SLOT])
    images = make_images(tmp_path / "imgs", 2)
    pending = upload(cluster, images)
    nodes[0].stop()
    wait_until(lambda: no_node_online(cluster), 10, "the node offline")
    assert httpx.post(f"{cluster.url}/task/new/commit/{pending}").json() == {"uuid": pending}
    later = create(cluster, images)["uuid"]  # init, upload and commit while it is offline
    assert [info(cluster, u)["status"]["code"] for u in (pending, later)] == [QUEUED, QUEUED]
    nodes[0].start()  # back on its port, with its options as before
    with Watcher(cluster, nodes, [pending, later]) as watcher:
        wait_until(watcher.all_done, 30, "both tasks done")
    assert [watcher.statuses[u][-1] for u in (pending, later)] == [COMPLETED, COMPLETED]


def test_without_the_queue_a_commit_with_no_node_online_keeps_the_upload(
    stack: Stack, tmp_path: Path
) -> None:
    """ClusterODM's answer ("No nodes available"), but the files stay: the same commit works
    once a node is back, without uploading again."""
    nodes, cluster = stack("--no-queue", node_flags=[ONE_SLOT])
    uuid = upload(cluster, make_images(tmp_path / "imgs", 2))
    nodes[0].stop()
    wait_until(lambda: no_node_online(cluster), 10, "the node offline")
    answer = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    assert answer == {"error": NO_NODE_ONLINE}
    assert uuid in tmp_entries(cluster)
    nodes[0].start()
    wait_until(lambda: not no_node_online(cluster), 10, "the node online again")
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    wait_until(lambda: info(cluster, uuid)["status"]["code"] == COMPLETED, 30, "the task done")


def test_queue_limits_refuse_init_at_their_exact_boundary(stack: Stack, tmp_path: Path) -> None:
    slow = ("--parallel-tasks", "1", "--processing-seconds", "10", "--processing-time-tick", "0")
    _, cluster = stack("--max-queued-tasks", "2", "--max-queued-tasks-total", "3", node_flags=[slow])
    images = make_images(tmp_path / "imgs", 1)
    create(cluster, images, token="a")  # runs
    assert "uuid" in create(cluster, images, token="a")  # queued: 1
    assert "uuid" in create(cluster, images, token="a")  # queued: 2
    refused = httpx.post(f"{cluster.url}/task/new/init", params={"token": "a"}).json()
    assert refused["error"].startswith("You have 2 tasks waiting in the queue")
    assert "--max-queued-tasks 2" in refused["error"]
    assert "uuid" in create(cluster, images, token="b")  # queued: 3 in total
    refused = httpx.post(f"{cluster.url}/task/new/init", params={"token": "c"}).json()
    assert refused["error"].startswith("The cluster's task queue is full (3 tasks wait, the limit is 3)")


def test_tmp_quota_at_its_exact_boundary(stack: Stack, tmp_path: Path) -> None:
    image = make_images(tmp_path / "imgs", 1, size=10_000)[0]
    data = Path(image).read_bytes()
    size = len(data)
    body = httpx.Request("POST", "http://x/", files=[("images", ("IMG_1.JPG", data))]).read()
    quota = size + len(body)  # one stored file plus one upload request of the same file, exactly
    _, cluster = stack("--tmp-quota", str(quota), node_flags=[ONE_SLOT])
    first = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    second = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]

    def upload(uuid: str, name: str, content: bytes = data, chunked: bool = False) -> dict[str, Any]:
        url = f"{cluster.url}/task/new/upload/{uuid}"
        request = httpx.Request("POST", url, files=[("images", (name, content))])
        raw = request.read()
        if chunked:  # no Content-Length: the size is not known before the files arrive
            headers = {"content-type": request.headers["content-type"]}
            return dict(httpx.post(url, content=iter([raw]), headers=headers).json())
        return dict(httpx.post(url, content=raw, headers=dict(request.headers)).json())

    assert upload(first, "IMG_1.JPG") == {"success": True}  # 0 used + request <= quota
    assert upload(second, "IMG_2.JPG") == {"success": True}  # size used + request == quota
    refused = upload(second, "IMG_3.JPG")  # 2 x size used + request > quota
    assert refused["error"].startswith(f"This upload of {len(body)} bytes is refused")
    assert f"use {2 * size} of the {quota} bytes" in refused["error"]
    assert sorted(p.name for p in (cluster.tmp_dir / second / "files").iterdir()) == ["IMG_2.JPG"]
    # Files of unknown size are let in while the quota is not used up; new tasks likewise.
    left = quota - 2 * size
    assert upload(second, "IMG_4.JPG", b"x" * (left - 1), chunked=True) == {"success": True}
    assert "uuid" in httpx.post(f"{cluster.url}/task/new/init").json()  # quota - 1 used
    assert upload(second, "IMG_5.JPG", b"x", chunked=True) == {"success": True}
    refused = httpx.post(f"{cluster.url}/task/new/init").json()  # quota used, exactly
    assert refused["error"].startswith(f"Refused: uploads and queued tasks use {quota} of the {quota} bytes")
    refused = upload(second, "IMG_6.JPG", b"x", chunked=True)
    assert refused["error"].startswith(f"Refused: uploads and queued tasks use {quota} of the {quota} bytes")


def test_a_node_added_or_unlocked_takes_the_head_of_the_queue_at_once(tmp_path: Path) -> None:
    with (
        SimNode(tmp_path, *ONE_SLOT, name="s0") as s0,
        SimNode(tmp_path, *ONE_SLOT, name="s1") as s1,
        ClusterODM(tmp_path, nodes=[s0], poll_interval=30).start(wait_nodes=1) as cluster,
    ):
        wait_for_cli(cluster)
        cli = Cli(cluster.host, cluster.admin_cli_port)
        cli.greeting()
        images = make_images(tmp_path / "imgs", 2)
        create(cluster, images, name="long sim-seconds=30")
        first = create(cluster, images, name="first")["uuid"]
        assert info(cluster, first)["status"]["code"] == QUEUED
        assert cli.command(f"NODE ADD {s1.host} {s1.port}") == ["OK"]
        wait_until(lambda: info(cluster, first)["status"]["code"] != QUEUED, 5, "sent to the new node")
        wait_until(lambda: info(cluster, first)["status"]["code"] == COMPLETED, 10, "first done")
        assert cli.command("NODE LOCK 2") == ["OK"]
        second = create(cluster, images, name="second")["uuid"]
        assert info(cluster, second)["status"]["code"] == QUEUED
        assert cli.command("NODE UNLOCK 2") == ["OK"]
        wait_until(lambda: info(cluster, second)["status"]["code"] != QUEUED, 5, "sent to the unlocked node")
        assert [t["uuid"] for t in httpx.get(f"{s1.url}/task/list").json()] == [first, second]


def test_the_stale_upload_cleanup_never_touches_a_queued_task(tmp_path: Path) -> None:
    """Past the 48 h cap of abandoned uploads, a queued task stays (--max-queue-hours decides)."""

    async def scenario() -> None:
        cluster = await Cluster.open(Config(data_dir=tmp_path / "data", stale_uploads_timeout=0.001))
        try:
            pipeline = cluster.pipeline
            uuid = "0b8d4f0e-7d9a-4c55-8f3e-2f4d1c9a6b10"
            session = pipeline.sessions.create(uuid, "", {})
            session.committed = True
            info = {"uuid": uuid, "status": {"code": QUEUED}, "processingTime": 0}
            await cluster.tasks.put(LocalTask(uuid, 0, info, []))
            await pipeline.queue.enqueue(uuid, 0, 1, 1, None)
            await pipeline.cleanup(now=session.created_ms / 1000 + HARD_CAP_S + 60)
            assert session.directory.is_dir() and uuid in pipeline.sessions
            assert [r.uuid for r in await cluster.store.load_queue()] == [uuid]
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_node_with_two_slots_runs_two_queued_tasks_at_once_never_three(
    stack: Stack, tmp_path: Path
) -> None:
    two = ("--parallel-tasks", "2", "--processing-seconds", "1.5", "--processing-time-tick", "0")
    nodes, cluster = stack(node_flags=[two])
    images = make_images(tmp_path / "imgs", 1)
    uuids: list[str] = []
    with Watcher(cluster, nodes, uuids) as watcher:
        uuids += [create(cluster, images, name="long sim-seconds=8")["uuid"] for _ in range(2)]
        uuids += [create(cluster, images)["uuid"] for _ in range(4)]
        wait_until(watcher.all_done, 40, "every task done")
    assert all(s[-1] == COMPLETED for s in watcher.statuses.values()), watcher.statuses
    assert watcher.most_on_a_node == 2
    assert any(watcher.statuses[u][0] == QUEUED for u in uuids[2:])  # all, unless creating is slow
