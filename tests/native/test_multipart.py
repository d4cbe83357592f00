"""MultipartScanner: any split of a body into chunks gives the same parts, without copying bodies."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterodm._native import MultipartScanner

S = MultipartScanner
BOUNDARY = b"----clusterodmTestBoundary7MA4YWxk"


def build(parts: list[tuple[bytes, bytes]], boundary: bytes = BOUNDARY) -> bytes:
    body = b"ignored preamble\r\n"
    for headers, data in parts:
        head = headers + b"\r\n\r\n" if headers else b"\r\n"  # a part may have no headers at all
        body += b"--" + boundary + b"\r\n" + head + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\nignored epilogue"


def scan(body: bytes, cuts: list[int], boundary: bytes = BOUNDARY) -> tuple[list[tuple[bytes, bytes]], str]:
    """Feed `body` split at `cuts`; rebuild (headers, data) per part from the events."""
    scanner = MultipartScanner(boundary)
    parts: list[tuple[bytes, bytearray]] = []
    edges = [0, *sorted(set(cuts)), len(body)]
    for start, end in zip(edges, edges[1:], strict=False):
        chunk = body[start:end]
        view = memoryview(chunk)
        for kind, a, b in scanner.feed(chunk):
            if kind == S.HEADERS:
                parts.append((a, bytearray()))
            elif kind == S.DATA:
                parts[-1][1].extend(view[a:b])
            elif kind == S.HELD:
                parts[-1][1].extend(a)
    return [(h, bytes(d)) for h, d in parts], scanner.state


# Bodies made of pieces of the delimiter are the hard case: they look like a boundary for a while.
tricky = st.lists(
    st.sampled_from([b"\r", b"\n", b"-", b"--", b"\r\n--", BOUNDARY[:5], BOUNDARY[:-1], b"x", b"\xff\x00"]),
    max_size=12,
).map(b"".join)
data = st.one_of(st.binary(max_size=300), tricky)
header = st.sampled_from([b"", b'Content-Disposition: form-data; name="a"', b"X-One: 1\r\nX-Two: 2"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(header, data), max_size=4), st.data())
def test_any_chunking_gives_the_parts(parts: list[tuple[bytes, bytes]], draw: st.DataObject) -> None:
    body = build(parts)
    cuts = draw.draw(st.lists(st.integers(0, len(body)), max_size=20))
    assert scan(body, cuts) == (parts, "done")


def test_byte_by_byte_and_whole() -> None:
    parts = [(b'Content-Disposition: form-data; name="f"; filename="a.jpg"', b"\r\n--" + BOUNDARY[:-1] * 3)]
    body = build(parts)
    assert scan(body, list(range(len(body)))) == (parts, "done")
    assert scan(body, []) == (parts, "done")


def test_big_chunk_data_is_reported_as_a_range() -> None:
    payload = bytes(range(256)) * 4096
    body = build([(b"X: 1", payload)])
    events = MultipartScanner(BOUNDARY).feed(body)
    ranges = [(a, b) for kind, a, b in events if kind == S.DATA]
    assert len(ranges) == 1
    assert body[ranges[0][0] : ranges[0][1]] == payload
    assert [kind for kind, _, _ in events] == [S.HEADERS, S.DATA, S.PART_END, S.DONE]


def test_truncated_body_reports_where_it_stopped() -> None:
    scanner = MultipartScanner(BOUNDARY)
    assert scanner.state == "preamble"
    scanner.feed(b"--" + BOUNDARY + b"\r\nX: 1\r\n")
    assert scanner.state == "headers"
    scanner.feed(b"\r\nsome data")
    assert scanner.state == "body"


@pytest.mark.parametrize(
    "body",
    [
        b"--" + BOUNDARY + b"garbage\r\n",
        b"--" + BOUNDARY + b"-x",
        b"--" + BOUNDARY + b"\r\n" + b"h" * (17 << 10),
    ],
)
def test_malformed_bodies_end_with_an_error_event(body: bytes) -> None:
    scanner = MultipartScanner(BOUNDARY)
    kind, message, _ = scanner.feed(body)[-1]
    assert kind == S.ERROR and isinstance(message, str) and message
    with pytest.raises(ValueError, match="malformed"):
        scanner.feed(b"more")


def test_events_before_a_fault_are_kept() -> None:
    """A part whose closing boundary arrived is complete, even if garbage follows in the same chunk."""
    body = b"--" + BOUNDARY + b"\r\nX: 1\r\n\r\ndata\r\n--" + BOUNDARY + b"garbage"
    kinds = [kind for kind, _, _ in MultipartScanner(BOUNDARY).feed(body)]
    assert kinds == [S.HEADERS, S.DATA, S.PART_END, S.ERROR]


@pytest.mark.parametrize("boundary", [b"", b"b" * 201])
def test_bad_boundary_raises_value_error(boundary: bytes) -> None:
    with pytest.raises(ValueError, match="boundary"):
        MultipartScanner(boundary)


def test_many_scanners_at_once() -> None:
    """Regression: the SIMD searcher must be aligned wherever Python puts the object (scanners kept
    alive together, between other allocations, land at addresses of every alignment)."""
    rng = random.Random(7)
    kept = []
    for _ in range(1000):
        boundary = rng.randbytes(8).hex().encode()
        data = rng.randbytes(300)
        body = build([(b"X: 1", data)], boundary)
        scanner = MultipartScanner(boundary)
        kept.append((scanner, bytes(rng.randrange(64))))
        received = bytearray()
        for start in range(0, len(body), 64):  # long enough pieces for the vectorised search
            chunk = body[start : start + 64]
            for kind, a, b in scanner.feed(chunk):
                if kind == S.DATA:
                    received += chunk[a:b]
                elif kind == S.HELD:
                    received += a
        assert bytes(received) == data and scanner.state == "done"
