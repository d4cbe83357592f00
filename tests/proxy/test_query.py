"""The caller's token read from the query string: the fast split agrees with `parse_qsl`."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from clusterodm.proxy.query import node_query, query_token


def reference(query: bytes) -> tuple[str, bool]:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    token = next((value for name, value in pairs if name == "token"), "")
    return token, any(name == "_debugUnauthorized" for name, _ in pairs)


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
    ],
)
def test_query_token_matches_parse_qsl(query: bytes) -> None:
    assert query_token(query) == reference(query)


def test_node_query_replaces_every_user_token() -> None:
    assert node_query(b"token=user&with_output=2&tok%65n=user2", "node/1") == "with_output=2&token=node%2F1"
    assert node_query(b"token=user", "") == ""
