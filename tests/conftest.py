"""Suite-wide fixtures.

PyODM's `Node.url` writes the node's token into the `query` dict it is given, and `get`, `post`
and `url` default that argument to one shared `{}`: once a test has used `Node(..., token=...)`,
every later PyODM call in the same process sends that token, even from a `Node` without one.
The fixture puts fresh defaults back after each test so tests cannot leak tokens into each other.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from pyodm.api import Node

from support.postgres import PostgresServer


def _fresh_defaults() -> None:
    for _, method in inspect.getmembers(Node, inspect.isfunction):
        defaults = method.__defaults__
        if defaults and any(isinstance(d, dict) and d for d in defaults):
            method.__defaults__ = tuple({} if isinstance(d, dict) else d for d in defaults)


@pytest.fixture(autouse=True)
def _pyodm_shared_query_defaults() -> Iterator[None]:
    yield
    _fresh_defaults()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run (started on first use)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
