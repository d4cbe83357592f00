"""RouteTable: unit tests and a hypothesis comparison against the dict-based reference."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterodm._native import RouteTable
from native.reference import ReferenceRouteTable

U1 = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
U2 = "6f9619ff-8b86-d011-b42d-00c04fc964ff"

MALFORMED = [
    "",
    "not-a-uuid",
    U1.replace("-", ""),
    "{" + U1[1:],
    U1[:-1] + "g",
    U1[:8] + "_" + U1[9:],
    U1 + "\n",
    " " + U1[1:],
    U1[:-1] + "\u00e9",
    U1[:35],
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_uuid_raises_value_error(bad: str) -> None:
    table = RouteTable()
    for call in (
        lambda: table.insert(bad, 1, 0, 0),
        lambda: table.get(bad, 0),
        lambda: table.peek(bad),
        lambda: table.remove(bad),
    ):
        with pytest.raises(ValueError, match="invalid task uuid"):
            call()
    assert bad not in table
    assert len(table) == 0


def test_contains_tolerates_any_object() -> None:
    table = RouteTable()
    table.insert(U1, 1, 0, 0)
    assert U1 in table
    assert U1.upper() in table
    assert U2 not in table
    assert None not in table
    assert 42 not in table


def test_uuids_are_case_insensitive_and_returned_lowercase() -> None:
    table = RouteTable()
    table.insert(U1.upper(), 3, 4, 5)
    assert table.peek(U1) == (3, 4, 5)
    assert table.by_node(3) == [U1]
    assert table.export() == [(U1, 3, 4, 5)]


def test_get_refreshes_and_peek_does_not() -> None:
    table = RouteTable()
    table.insert(U1, 1, 2, 100)
    assert table.peek(U1) == (1, 2, 100)
    assert table.get(U1, 250) == (1, 2, 250)
    assert table.peek(U1) == (1, 2, 250)
    before = int(time.time() * 1000)
    node, owner, accessed = table.get(U1)  # type: ignore[misc]
    after = int(time.time() * 1000)
    assert (node, owner) == (1, 2)
    assert before <= accessed <= after
    assert table.get(U2, 1) is None


def test_insert_replaces() -> None:
    table = RouteTable()
    table.insert(U1, 1, 7, 10)
    table.insert(U1, 2, 8, 20)
    assert len(table) == 1
    assert table.peek(U1) == (2, 8, 20)
    assert table.by_node(1) == []
    assert table.by_owner(8) == [U1]


def test_remove_node_expire_and_owner_zero() -> None:
    table = RouteTable()
    ids = [str(uuidlib.UUID(int=i)) for i in range(1, 11)]
    for i, u in enumerate(ids):
        table.insert(u, i % 2, 0 if i < 5 else 9, i * 10)
    assert sorted(table.by_owner(0)) == sorted(ids[:5])
    assert sorted(table.remove_node(1)) == sorted(ids[1::2])
    assert table.remove_node(1) == []
    # accessed < cutoff is removed; == cutoff stays.
    assert sorted(table.expire(40)) == sorted([ids[0], ids[2]])
    assert sorted(u for u, *_ in table.export()) == sorted([ids[4], ids[6], ids[8]])
    assert table.remove(ids[4]) is True
    assert table.remove(ids[4]) is False
    assert len(table) == 2


def test_export_load_round_trip() -> None:
    source = RouteTable()
    for i in range(1000):
        source.insert(str(uuidlib.uuid4()), i % 7, i % 3, 1_700_000_000_000 + i)
    copy = RouteTable()
    copy.load(source.export())
    assert sorted(copy.export()) == sorted(source.export())
    assert len(copy) == 1000


def test_load_is_all_or_nothing() -> None:
    table = RouteTable()
    table.insert(U2, 5, 5, 5)
    good = (U1, 1, 0, 0)
    with pytest.raises(ValueError, match="invalid task uuid"):
        table.load([good, ("nope", 1, 0, 0)])
    with pytest.raises(OverflowError):
        table.load([good, (U1, -1, 0, 0)])
    with pytest.raises(ValueError, match="length"):
        table.load([good, (U1, 1, 0)])  # type: ignore[list-item]
    assert table.export() == [(U2, 5, 5, 5)]


def test_ids_must_fit_u32() -> None:
    table = RouteTable()
    with pytest.raises(OverflowError):
        table.insert(U1, 2**32, 0, 0)
    with pytest.raises(OverflowError):
        table.insert(U1, 0, -1, 0)
    table.insert(U1, 2**32 - 1, 2**32 - 1, 2**64 - 1)
    assert table.peek(U1) == (2**32 - 1, 2**32 - 1, 2**64 - 1)


# --- property test: random operation sequences agree with the reference -----------------------

# A handful of ids so operations keep hitting the same keys; mixed case exercises normalisation.
POOL = [str(uuidlib.UUID(int=(i * 0x9E3779B97F4A7C15) << 32 | i)) for i in range(8)]
uuids = st.sampled_from(POOL).flatmap(lambda u: st.sampled_from([u, u.upper()]))
small = st.integers(0, 3)
times = st.integers(0, 20)  # narrow, so expire cutoffs often equal an access time

operations = st.one_of(
    st.tuples(st.just("insert"), uuids, small, small, times),
    st.tuples(st.just("get"), uuids, times),
    st.tuples(st.just("peek"), uuids),
    st.tuples(st.just("remove"), uuids),
    st.tuples(st.just("remove_node"), small),
    st.tuples(st.just("by_node"), small),
    st.tuples(st.just("by_owner"), small),
    st.tuples(st.just("expire"), times),
    st.tuples(st.just("contains"), st.one_of(uuids, st.text(max_size=40))),
    st.tuples(st.just("load"), st.lists(st.tuples(uuids, small, small, times), max_size=4)),
)


def _normalise(result: object) -> object:
    return sorted(result) if isinstance(result, list) else result


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60))
def test_matches_reference(ops: list[tuple]) -> None:
    table = RouteTable()
    got: object
    expected: object
    model = ReferenceRouteTable()
    for name, *args in ops:
        if name == "contains":
            got, expected = args[0] in table, args[0] in model
        elif name == "load":
            table.load(list(args[0]))
            model.load(list(args[0]))
            got = expected = None
        else:
            got, expected = getattr(table, name)(*args), getattr(model, name)(*args)
        assert _normalise(got) == _normalise(expected), (name, args)
        assert len(table) == len(model)
    assert sorted(table.export()) == sorted(model.export())
