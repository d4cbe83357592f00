"""Operator-facing log lines: `--log-format json` and the notice of a cluster without nodes."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from clusterodm.config import load_config
from clusterodm.logs import JsonFormatter
from clusterodm.notices import no_node_notice
from support.clusterodm import ClusterODM
from support.simnode import SimNode

FIELDS = {"time", "level", "logger", "message"}


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every line of the log, each parsed on its own (a line that is not JSON fails the test)."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_json_formatter_keeps_the_text_fields_and_the_traceback_on_one_line() -> None:
    try:
        raise ValueError("bad node answer")
    except ValueError:
        record = logging.getLogger("clusterodm.test").makeRecord(
            "clusterodm.test",
            logging.ERROR,
            __file__,
            1,
            "poll of %s failed:\nsee below",
            ("n1",),
            sys.exc_info(),
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR" and parsed["logger"] == "clusterodm.test"
    assert parsed["message"] == "poll of n1 failed:\nsee below"
    assert parsed["time"].endswith("+00:00") and "T" in parsed["time"]
    assert "Traceback" in parsed["exception"] and "ValueError: bad node answer" in parsed["exception"]


def test_json_logs_parse_line_by_line_and_carry_the_fields(tmp_path: Path) -> None:
    with SimNode(tmp_path) as node, ClusterODM(tmp_path, "--log-format", "json", nodes=[node]) as cluster:
        cluster.wait_online(1)
        assert httpx.get(f"{cluster.url}/info", timeout=5).status_code == 200
        _wait_for(lambda: "is online" in cluster.log(), "no 'node is online' line")
    records = _json_lines(cluster.log())  # includes the shutdown lines: the process has stopped
    assert records and all(FIELDS <= record.keys() for record in records)
    messages = [str(r["message"]) for r in records]
    assert any("NodeODM API on http://127.0.0.1" in m for m in messages)
    assert any("is online" in m for m in messages)
    assert any(m == "state saved, bye" for m in messages)
    assert {r["level"] for r in records} <= {"INFO", "WARNING", "ERROR", "VERBOSE", "DEBUG"}
    assert all(str(r["logger"]).startswith("clusterodm") for r in records)


def test_json_log_format_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"log-format": "json"}')
    with ClusterODM(tmp_path, "--config", str(config)) as cluster:
        pass
    assert _json_lines(cluster.log())


def test_no_node_notice_at_start_and_when_a_client_asks_info(tmp_path: Path) -> None:
    with ClusterODM(tmp_path) as cluster:
        notice = no_node_notice(
            load_config(
                [
                    "--admin-cli-port",
                    str(cluster.admin_cli_port),
                    "--admin-web-port",
                    str(cluster.admin_web_port),
                    "--data-dir",
                    str(cluster.data_dir),
                ]
            )
        )
        _wait_for(lambda: notice in cluster.log(), "no notice at start")
        assert f"telnet 127.0.0.1 {cluster.admin_cli_port}, then NODE ADD <host> <port>" in notice
        assert f"http://127.0.0.1:{cluster.admin_web_port}" in notice and "/r/node/add" in notice
        assert str(cluster.data_dir / "nodes.json") in notice
        # A client asking /info gets the usual answer; the operator's log says why nothing will run.
        for _ in range(3):
            assert httpx.get(f"{cluster.url}/info", timeout=5).json()["engine"] == "?"
        _wait_for(lambda: f"GET /info: {notice}" in cluster.log(), "no notice on /info")
        assert cluster.log().count(f"GET /info: {notice}") == 1, "repeated within a minute"


def test_no_notice_with_a_node(tmp_path: Path) -> None:
    with SimNode(tmp_path) as node, ClusterODM(tmp_path, nodes=[node]) as cluster:
        cluster.wait_online(1)
        httpx.get(f"{cluster.url}/info", timeout=5)
        assert "No processing node" not in cluster.log()
