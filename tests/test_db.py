"""`--db`: clusterodm processes against a real PostgreSQL, and what stops a start (exit 2, one
line): a second process on one SQLite data folder, a bad URL, an unreachable database, a schema
from a newer clusterodm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from pyodm import Node

from support.clusterodm import ClusterODM
from support.images import make_images
from support.postgres import PostgresServer
from support.procs import free_port
from support.simnode import SimNode

CLI = [sys.executable, "-m", "clusterodm.main", "--admin-cli-port", "0", "--admin-web-port", "0"]


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """Start clusterodm with `args`, expecting exit 2; returns its one error line."""
    proc = subprocess.run(
        [*CLI, "--port", str(free_port()), *args], capture_output=True, text=True, timeout=30, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clusterodm: error: "), proc.stderr
    return lines[0]


def test_tasks_stay_routed_across_a_restart_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    """Everything lives in the database: a restart with an empty data folder still routes the task."""
    url = postgres.database()
    images = make_images(tmp_path / "images", 2)
    with SimNode(tmp_path, "--processing-seconds", "0.5") as sim:
        with ClusterODM(tmp_path, "--db", url, nodes=[sim], name="first").start(wait_nodes=1) as first:
            task = Node(first.host, first.port).create_task(images, {"dsm": True}, name="pg")
            task.wait_for_completion(interval=0.1)  # forwarded: routed to the node
            uuid = str(task.uuid)
            assert not (first.data_dir / "clusterodm.sqlite3").exists()
        with ClusterODM(tmp_path, "--db", url, name="second").start(wait_nodes=1) as second:
            assert not second.data_dir.joinpath("clusterodm.sqlite3").exists()
            info = Node(second.host, second.port).get_task(uuid).info()
            assert (info.uuid, info.images_count, info.status.name) == (uuid, 2, "COMPLETED")
            assert httpx.get(f"{second.url}/task/{uuid}/output").json()  # the node's lines, through it
            download = httpx.get(f"{second.url}/task/{uuid}/download/all.zip")
            assert download.status_code == 200 and download.content.startswith(b"PK")
            assert len(httpx.get(f"{second.admin_url}/r/node/list").json()) == 1  # from the database


def test_a_second_process_on_one_sqlite_folder_is_refused(tmp_path: Path) -> None:
    with ClusterODM(tmp_path).start() as running:
        line = refused("--data-dir", str(running.data_dir))
        assert "another clusterodm uses the data folder" in line
        assert "--db postgresql://" in line
        assert httpx.get(f"{running.url}/info").status_code == 200  # the first one is untouched
    with ClusterODM(tmp_path, data_dir=running.data_dir).start():  # free again once it stopped
        pass


def test_bad_db_settings_stop_the_start_with_one_line(tmp_path: Path, postgres: PostgresServer) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert "unknown database URL" in refused(*data, "--db", "mysql://u:p@h/db")
    line = refused(*data, "--db", f"postgresql://u:secret@127.0.0.1:{free_port()}/db")
    assert "cannot connect to the database postgresql://u:***@" in line and "secret" not in line
    env = {**os.environ, "CLUSTERODM_DB": "redis://x"}
    assert "--db redis://x: unknown database URL" in refused(*data, env=env)
    url = postgres.database()
    with ClusterODM(tmp_path, "--db", url).start():
        pass  # creates the schema
    postgres.execute(url, "UPDATE clusterodm_schema SET version = version + 1")
    assert "newer than this clusterodm knows" in refused(*data, "--db", url)
