"""A throwaway PostgreSQL cluster for the tests: initdb into a temp folder, `postgres` on a free
loopback port with trust authentication, one fresh database per test, stopped at the end.

PostgreSQL refuses to run as root, and CI runs as root: then every PostgreSQL program runs as
the `postgres` system user Debian's `postgresql` package creates, in a folder that user owns.
Durability settings are off (fsync, synchronous_commit): the data is thrown away anyway.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import psycopg

from support.procs import free_port

START_TIMEOUT_S = 30.0


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        found_on_path = shutil.which("initdb")
        if found_on_path is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no initdb): run `scripts/setup.sh --test` "
                "(Debian package `postgresql`)"
            )
        return Path(found_on_path).parent
    return Path(found[-1]).parent


class PostgresServer:
    """One PostgreSQL server process; `database()` hands out fresh databases by URL."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.host = "127.0.0.1"
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="clusterodm-pg-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that run a PostgreSQL program as the right user."""
        if self._user is None:
            return {}
        return {"user": self._user, "group": self._user, "extra_groups": []}

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def start(self) -> Self:
        init = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
            + ["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
            **self._run_as(),
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr or init.stdout}")
        return self._launch()

    def _launch(self) -> Self:
        """Start the server on its data folder and port; returns once it accepts connections."""
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root)]
        for setting in (
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=300",
        ):
            args += ["-c", setting]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                **self._run_as(),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def execute(self, url: str, sql: str) -> None:
        """Run one statement on the database at `url` (tests poking at the schema)."""
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def halt(self) -> None:
        """Fast shutdown (SIGINT: active connections are ended), bounded; the data stays for `resume`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def resume(self) -> Self:
        """Start a halted server again, same data and port (a database outage ending)."""
        return self._launch()

    def stop(self) -> None:
        """Halt for good: the folder goes too."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
