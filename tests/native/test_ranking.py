"""Node ranking: unit tests and hypothesis comparisons against the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterodm._native import NodeBoard, rank_nodes
from native.reference import TURN_RESET_ABOVE, ReferenceBoard, rank_rows


def row(
    node_id: int,
    max_images: int | None = None,
    mpt: int = 2,
    queue: int = 0,
    transit: int = 0,
    turn: int = 0,
    online: bool = True,
    locked: bool = False,
    auto: bool = False,
) -> tuple[int, bool, bool, bool, int | None, int, int, int, int]:
    return (node_id, online, locked, auto, max_images, mpt, queue, transit, turn)


def board_of(*specs: tuple[int, int | None, int, int]) -> NodeBoard:
    board = NodeBoard()
    for node_id, max_images, mpt, queue in specs:
        board.upsert(node_id, True, False, False, max_images, mpt, queue)
    return board


def test_filters() -> None:
    rows = [
        row(1, online=False),
        row(2, locked=True),
        row(3, auto=True),
        row(4, max_images=9),
        row(5, max_images=0),
        row(6),
    ]
    assert rank_nodes(rows, 10) == [5, 6]
    assert rank_nodes(rows, 9) == [4, 5, 6]
    assert rank_nodes([], 1) == []


def test_order_of_keys() -> None:
    rows = [
        row(1, turn=3),
        row(2, max_images=500, mpt=1),
        row(3, queue=1, mpt=3),
        row(4, mpt=3, queue=1, transit=0),
        row(5),
        row(6, mpt=5, queue=3),
    ]
    # 2: smallest limit; then 2 free slots ordered by queue, then turn, then registry order.
    assert rank_nodes(rows, 1) == [2, 5, 1, 3, 4, 6]


def test_best_prefers_free_slot_and_changes_nothing() -> None:
    board = board_of((1, 10, 1, 1), (2, None, 1, 0))
    assert board.best(5) == 2
    assert board.add_in_transit(2, 1) == 1
    assert board.free_slots(2) == 0
    # Nobody has a slot: the first ranked (smaller max_images) gets the task queued.
    assert board.best(5) == 1
    assert board.best(5) == 1
    assert (board.turn(1), board.turn(2)) == (0, 0)
    assert board.best(11) == 2
    board.set_online(2, False)
    assert board.best(11) is None
    assert board.choose(11) is None


def test_choose_rotates_between_equals() -> None:
    board = board_of((1, None, 2, 0), (2, None, 2, 0), (3, None, 2, 0))
    picks = [board.choose(1) for _ in range(6)]
    assert picks == [1, 2, 3, 1, 2, 3]
    assert [board.turn(i) for i in (1, 2, 3)] == [4, 5, 6]


def test_turns_reset_above_two_billion() -> None:
    board = board_of((1, None, 2, 0), (2, None, 2, 0), (3, None, 2, 0))
    board.set_locked(3, True)
    board.set_turn(3, TURN_RESET_ABOVE)  # at the limit: no reset yet, locked nodes count too
    assert board.choose(1) == 1
    assert [board.turn(i) for i in (1, 2, 3)] == [TURN_RESET_ABOVE + 1, 0, TURN_RESET_ABOVE]
    assert board.choose(1) == 2  # max is above the limit: everything resets, winner gets 1
    assert [board.turn(i) for i in (1, 2, 3)] == [0, 1, 0]


def test_in_transit_floor_and_upsert_keeps_state() -> None:
    board = board_of((7, None, 3, 0))
    assert board.add_in_transit(7, 2) == 2
    assert board.add_in_transit(7, -5) == 0
    board.add_in_transit(7, 1)
    board.choose(1)
    board.upsert(7, True, False, False, None, 4, 1)
    assert board.turn(7) == 1
    assert board.free_slots(7) == 2
    assert board.rows() == [(7, True, False, False, None, 4, 1, 1, 1)]


def test_unknown_ids_raise_key_error() -> None:
    board = board_of((1, None, 1, 0))
    for call in (
        lambda: board.set_online(9, True),
        lambda: board.set_locked(9, True),
        lambda: board.add_in_transit(9, 1),
        lambda: board.turn(9),
        lambda: board.free_slots(9),
    ):
        with pytest.raises(KeyError):
            call()
    assert board.remove(9) is False
    assert 9 not in board and 1 in board


def test_remove_keeps_registry_order() -> None:
    board = board_of((1, None, 1, 0), (2, None, 1, 0), (3, None, 1, 0), (4, None, 1, 0))
    assert board.remove(2) is True
    board.upsert(2, True, False, False, None, 1, 0)
    assert [r[0] for r in board.rows()] == [1, 3, 4, 2]
    assert board.rank(1) == [1, 3, 4, 2]
    assert len(board) == 4


def test_ids_must_fit_u32() -> None:
    board = NodeBoard()
    with pytest.raises(OverflowError):
        board.upsert(2**32, True, False, False, None, 1, 0)
    with pytest.raises(OverflowError):
        board.upsert(-1, True, False, False, None, 1, 0)


# --- property tests -----------------------------------------------------------------------------

# Small ranges so ties on every key are common.
rows_strategy = st.lists(
    st.tuples(
        st.booleans(),
        st.booleans(),
        st.booleans(),
        st.sampled_from([None, 0, 3, 5, 999_999_999, 10**10]),
        st.integers(0, 3),
        st.integers(0, 4),
        st.integers(0, 2),
        st.sampled_from([0, 0, 1, 2, TURN_RESET_ABOVE, TURN_RESET_ABOVE + 1]),
    ).map(lambda t: (0, *t)),
    max_size=12,
).map(lambda rows: [(i, *r[1:]) for i, r in enumerate(rows)])


@settings(max_examples=400, deadline=None)
@given(rows_strategy, st.integers(0, 7))
def test_rank_nodes_matches_reference(rows: list[tuple], image_count: int) -> None:
    assert rank_nodes(rows, image_count) == rank_rows(rows, image_count)


def _load(board: NodeBoard | ReferenceBoard, rows: list[tuple]) -> None:
    for r in rows:
        board.upsert(*r[:7])
        board.add_in_transit(r[0], r[7])
        board.set_turn(r[0], r[8])


board_ops = st.lists(
    st.one_of(
        st.tuples(st.just("choose"), st.integers(0, 7)),
        st.tuples(st.just("best"), st.integers(0, 7)),
        st.tuples(st.just("add_in_transit"), st.integers(0, 11), st.integers(-2, 2)),
        st.tuples(st.just("set_online"), st.integers(0, 11), st.booleans()),
        st.tuples(st.just("set_locked"), st.integers(0, 11), st.booleans()),
        st.tuples(st.just("remove"), st.integers(0, 11)),
        st.tuples(st.just("set_turn"), st.integers(0, 11), st.sampled_from([0, 5, TURN_RESET_ABOVE + 1])),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(rows_strategy, board_ops)
def test_board_matches_reference(rows: list[tuple], ops: list[tuple]) -> None:
    native, model = NodeBoard(), ReferenceBoard()
    _load(native, rows)
    _load(model, rows)
    for name, *args in ops:
        try:
            expected = getattr(model, name)(*args)
        except KeyError:
            with pytest.raises(KeyError):
                getattr(native, name)(*args)
            continue
        assert getattr(native, name)(*args) == expected, (name, args)
        assert native.rows() == model.rows()
    for image_count in range(8):
        assert native.rank(image_count) == model.rank(image_count)
