"""The caller's token read from the query string: the fast split agrees with `parse_qsl`; a
repeated `token` is refused as NodeODM refuses it."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from clusterodm.proxy.query import node_query, query_token


def reference(query: bytes) -> tuple[str, bool]:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    tokens = [value for name, value in pairs if name == "token"]
    debug = any(name == "_debugUnauthorized" for name, _ in pairs)
    return (tokens or [""])[0], debug or len(tokens) > 1


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"token=abc",
        b"token",
        b"a=1&token=x&token=y",
        b"&&token=&_debugUnauthorized=1",
        b"token=a=b",
        b"token=\xe9t\xe9",
        b"tok%65n=1&token=2",
        b"token=a+b%2Fc",
        b"token=a&token=a",
        b"token=a&tok%65n=b",
        b"token=&token=",
    ],
)
def test_query_token_matches_parse_qsl(query: bytes) -> None:
    assert query_token(query) == reference(query)


def test_node_query_replaces_every_user_token() -> None:
    assert node_query(b"token=user&with_output=2&tok%65n=user2", "node/1") == "with_output=2&token=node%2F1"
    assert node_query(b"token=user", "") == ""


def test_repeated_token_is_refused() -> None:
    assert query_token(b"token=a&token=b") == ("a", True)
    assert query_token(b"token=a&with_output=2") == ("a", False)
