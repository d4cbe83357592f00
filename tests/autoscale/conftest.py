"""Fixtures for the autoscaler: the fake docker-machine on PATH and a moto S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscale.asrkit import FakeMachines, MotoS3
from support.paths import VENV_BIN
from support.procs import free_port, start_process, stop_process, wait_http


@pytest.fixture
def fake_dm(tmp_path: Path) -> Iterator[FakeMachines]:
    fake = FakeMachines(tmp_path / "fake-dm")
    fake.state.mkdir()
    try:
        yield fake
    finally:
        fake.kill_all()


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[MotoS3]:
    port = free_port()
    log = tmp_path / "moto.log"
    proc = start_process([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=20, proc=proc, log_path=log)
        yield MotoS3(f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc)
