"""Suite-wide fixtures.

PyODM's `Node.url` writes the node's token into the `query` dict it is given, and `get`, `post`
and `url` default that argument to one shared `{}`: once a test has used `Node(..., token=...)`,
every later PyODM call in the same process sends that token, even from a `Node` without one.
The fixture puts fresh defaults back after each test so tests cannot leak tokens into each other.

Integration modules marked `both_backends` run every test twice, ids `[sqlite]` and `[pg]`: the
second time each clusterodm they start runs on a fresh database of the session's PostgreSQL
server (one per data dir), so routes, nodes, the task table and the pipeline are checked on both
stores. A module-scoped fixture starting clusterodm must request `clusterodm_backend` to follow.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyodm.api import Node

from support.clusterodm import use_databases
from support.postgres import PostgresServer

BACKENDS = ("sqlite", "pg")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the module on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_backends") is not None:
        metafunc.parametrize("clusterodm_backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def clusterodm_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store clusterodm processes of this module run on: SQLite unless parametrized to "pg"."""
    backend: str = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield backend
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    databases: dict[Path, str] = {}

    def database_for(data_dir: Path) -> str:
        key = data_dir.resolve()
        if key not in databases:
            databases[key] = server.database()
        return databases[key]

    use_databases(database_for)
    try:
        yield backend
    finally:
        use_databases(None)
    # A module that starts no clusterodm on the chosen database would run twice on SQLite.
    assert databases, f"{request.module.__name__} is marked both_backends but started no clusterodm"


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
