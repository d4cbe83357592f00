"""The queue model: positions of waiting tasks and the leader's placement decisions."""

from __future__ import annotations

from clusterodm.cluster.queue import plan, positions, waiting_line
from clusterodm.cluster.store import QueuedTask


def task(
    uuid: str, owner: int = 1, files: int = 3, seq: int = 0, node: int | None = None, limit: int | None = None
) -> QueuedTask:
    return QueuedTask(uuid, owner, "r", files, files, limit, 0, seq, seq, node)


def test_positions_count_only_waiting_tasks() -> None:
    queue = [task("a", node=1), task("b"), task("c"), task("d")]
    assert positions(queue) == {"b": (1, 3), "c": (2, 3), "d": (3, 3)}
    assert waiting_line(3, 7) == "Waiting for a free node: position 3 of 7"


def test_head_goes_to_the_best_node_with_a_free_slot() -> None:
    queue = [task("a"), task("b"), task("c")]
    done, unplaced = plan(queue, lambda files: [5, 6], {5: 0, 6: 2}, lambda t: None)
    assert [(a.task.uuid, a.node_id) for a in done] == [("a", 6), ("b", 6)]
    assert [t.uuid for t in unplaced] == ["c"]


def test_a_big_task_never_goes_to_a_small_node_and_does_not_block_the_next() -> None:
    small, big = 5, 6
    queue = [task("huge", files=500), task("tiny", files=2)]
    ranked = {500: [big], 2: [small, big]}
    done, unplaced = plan(queue, lambda files: ranked[files], {small: 1, big: 0}, lambda t: None)
    assert [(a.task.uuid, a.node_id) for a in done] == [("tiny", small)]
    assert [t.uuid for t in unplaced] == ["huge"]


def test_an_owner_at_its_limit_lets_the_next_owner_go_first() -> None:
    queue = [task("a1", owner=1, limit=1), task("b1", owner=2), task("a2", owner=1, limit=1)]
    room = {1: 1, 2: None}
    done, _ = plan(queue, lambda files: [9], {9: 3}, lambda t: room[t.owner_id])
    assert [a.task.uuid for a in done] == ["a1", "b1"]  # a2 waits: owner 1 may run one at a time
    room = {1: 0, 2: None}
    done, unplaced = plan(queue, lambda files: [9], {9: 3}, lambda t: room[t.owner_id])
    assert [a.task.uuid for a in done] == ["b1"] and unplaced == []
