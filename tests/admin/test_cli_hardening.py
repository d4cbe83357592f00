"""The telnet CLI against what is not an operator: HTTP clients and web pages (cross-protocol
requests), idle connections, password guessing, and node text carrying terminal escapes.

Issue 11 part 1: without `--admin-pass`, `curl --data-binary $'NODE ADD ...'` or an HTML form on
any web site posted to the CLI port used to add a node. Each probe here is the real thing: the
curl binary, headless Chromium submitting a form, GNU telnet on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from support.admin_env import Cli, random_uuid, seed_store, wait_for_cli
from support.clusterodm import ClusterODM

IDLE_S = 2.0
ATTACK = "NODE ADD 127.0.0.1 3999"
HTTP_WARNING = "sent an HTTP request"
CONNECTED, DISCONNECTED = " connected", " disconnected"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterODM]:
    """A clusterodm without nodes or password (the default), with a short CLI idle timeout."""
    workdir = tmp_path_factory.mktemp("cli-hardening")
    flags = ("--admin-cli-idle-timeout", str(IDLE_S), "--log-level", "verbose")  # verbose: disconnects
    with ClusterODM(workdir, *flags) as running:
        wait_for_cli(running)
        yield running


def node_names(cluster: ClusterODM) -> list[str]:
    """The nodes, asked both ways: the CLI's NODE LIST and the admin API (they must agree)."""
    cli = Cli(cluster.host, cluster.admin_cli_port)
    try:
        cli.greeting()
        listed = [line for line in cli.command("NODE LIST") if line]
    finally:
        cli.close()
    api = [n["name"] for n in httpx.get(f"{cluster.admin_url}/r/node/list", timeout=5).json()]
    assert len(listed) == len(api), (listed, api)
    return api


def wait_for_log(cluster: ClusterODM, text: str, count: int, timeout: float = 20.0) -> None:
    """Wait until `text` is in the log `count` times."""
    deadline = time.monotonic() + timeout
    while (log := cluster.log()).count(text) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {text!r} in the log:\n{log}"
        time.sleep(0.05)


def test_curl_post_to_cli_port_adds_no_node(cluster: ClusterODM) -> None:
    before = cluster.log().count(HTTP_WARNING)
    for _ in range(3):
        proc = subprocess.run(
            [
                "curl",
                "--http0.9",
                "--max-time",
                "5",
                "-sS",
                "-X",
                "POST",
                "-H",
                "Content-Type: text/plain",
                "--data-binary",
                f"{ATTACK}\r\n",
                f"http://127.0.0.1:{cluster.admin_cli_port}/",
            ],
            capture_output=True,
            timeout=15,
        )
        assert proc.returncode != 28, f"curl timed out: the CLI kept the connection open ({proc.stderr!r})"
        assert b"OK" not in proc.stdout, proc.stdout
        assert node_names(cluster) == []
    assert cluster.log().count(HTTP_WARNING) == before + 3
    warning = next(line for line in cluster.log().splitlines() if HTTP_WARNING in line)
    assert "127.0.0.1:" in warning and "POST / HTTP/1.1" in warning  # who, and what


class _FormSite(ThreadingHTTPServer):
    """A web site with a form posting a CLI command as `text/plain`; it records posts to itself."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.action = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                # A field named `<command>\r\nx` with an empty value: the text/plain body is
                # `<command>\r\nx=\r\n`, so the command is a line of its own.
                page = (
                    f'<!doctype html><form method="POST" enctype="text/plain" action="{site.action}">'
                    f'<input type="hidden" name="{ATTACK}&#13;&#10;x" value=""></form>'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:  # noqa: N802
                site.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def test_browser_form_post_to_cli_port_adds_no_node(cluster: ClusterODM) -> None:
    site = _FormSite()
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                context.set_default_timeout(20_000)

                def submit(action: str) -> None:
                    """Open the site in a new tab and submit its form (the tab is left to load)."""
                    site.action = action
                    page = context.new_page()
                    page.goto(site.url)
                    page.evaluate("document.forms[0].submit()")

                # The payload is real: posted to the site itself, the body holds the command line.
                submit(site.url)
                deadline = time.monotonic() + 20
                while not site.bodies:
                    assert time.monotonic() < deadline, "the form never reached its own site"
                    time.sleep(0.05)
                assert ATTACK in site.bodies[0].decode().split("\r\n"), site.bodies[0]

                warnings = cluster.log().count(HTTP_WARNING)
                for _ in range(5):
                    # A post is over when the CLI is done with its connection (Chromium may
                    # post again on a new one: wait for all of them).
                    opened = cluster.log().count(CONNECTED)
                    submit(f"http://127.0.0.1:{cluster.admin_cli_port}/")
                    wait_for_log(cluster, CONNECTED, opened + 1)
                    wait_for_log(cluster, DISCONNECTED, cluster.log().count(CONNECTED))
                    assert node_names(cluster) == []
                # The posts were refused as HTTP (Chromium may drop a connection whose greeting it
                # read before the CLI saw its request, so not necessarily all five).
                wait_for_log(cluster, HTTP_WARNING, warnings + 1)
            finally:
                browser.close()
    finally:
        site.shutdown()
        site.server_close()
    assert node_names(cluster) == []


def test_http_line_closes_before_the_lines_after_it(cluster: ClusterODM) -> None:
    for packet in (
        f"NODE LIST\r\nPOST / HTTP/1.1\r\n{ATTACK}\r\n",
        f"NODE LIST\r\nHost: 127.0.0.1\r\n\r\n{ATTACK}\r\n",
        f"NODE LIST\r\ncontent-type: text/plain\r\n{ATTACK}\r\n",
        f"NODE LIST\r\nGET /\r\n{ATTACK}\r\n",  # HTTP/0.9's request line has no version
    ):
        cli = Cli(cluster.host, cluster.admin_cli_port)
        try:
            cli.greeting()
            cli.send(packet.encode())
            assert cli.reply() == [""]  # NODE LIST ran, then nothing more: the connection closed
            assert cli.read_to_eof() == b""
        finally:
            cli.close()
    # A request line alone, in its own packet, closes at once too.
    cli = Cli(cluster.host, cluster.admin_cli_port)
    try:
        cli.greeting()
        cli.send(b"PUT /task/new HTTP/1.0\r\n")
        assert cli.read_to_eof() == b""
    finally:
        cli.close()
    assert node_names(cluster) == []


def test_idle_session_is_closed(cluster: ClusterODM) -> None:
    idle = Cli(cluster.host, cluster.admin_cli_port)
    busy = Cli(cluster.host, cluster.admin_cli_port)
    try:
        idle.greeting()
        busy.greeting()
        start = time.monotonic()
        # A session that keeps typing outlives the timeout.
        while time.monotonic() - start < IDLE_S * 1.5:
            assert busy.command("NODE LIST") == [""]
            time.sleep(IDLE_S / 4)
        assert idle.read_to_eof() == f"\r\nIdle for {IDLE_S:g} s, closing the connection.\r\n".encode()
        assert IDLE_S * 0.9 <= time.monotonic() - start <= IDLE_S + 3
        assert busy.command("NODE LIST") == [""]
        # A connection that never sends a byte is closed the same way.
        silent = socket.create_connection((cluster.host, cluster.admin_cli_port), timeout=IDLE_S + 5)
        with silent:
            silent.settimeout(IDLE_S + 5)
            received = b""
            while chunk := silent.recv(4096):
                received += chunk
            assert received.endswith(b"closing the connection.\r\n")
    finally:
        idle.close()
        busy.close()


def test_real_telnet_session(cluster: ClusterODM) -> None:
    """GNU telnet on a pseudo-terminal, as an operator would use it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become telnet, and never return into pytest
        try:
            os.execvp("telnet", ["telnet", cluster.host, str(cluster.admin_cli_port)])
        finally:
            os._exit(127)
    output = b""

    def read_until(marker: bytes, timeout: float = 10.0) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} from telnet; got {output!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    output += os.read(fd, 4096)
                except OSError:  # the pty closes when telnet exits
                    break
        assert marker in output, output

    try:
        read_until(b"#> ")
        os.write(fd, b"HELP\r")
        read_until(b"QUIT - Close the connection")
        os.write(fd, b"NODE BEST 3\r")
        read_until(b"No best node available")
        os.write(fd, b"QUIT\r")
        read_until(b"Bye!")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status)
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b1m\x85\r"
"""Clear screen, window title, 8-bit CSI, NEL, CR: what a hostile node puts in its answers."""


class _HostileNode(ThreadingHTTPServer):
    """A NodeODM look-alike whose every text field carries terminal escape sequences."""

    def __init__(self, task_uuid: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                path = self.path.split("?")[0]
                if path == "/info":
                    body: object = {
                        "version": f"2.2.4{ESCAPES}",
                        "taskQueueCount": 0,
                        "maxParallelTasks": 1,
                        "maxImages": None,
                        "engine": f"odm{ESCAPES}",
                        "engineVersion": f"3.5.1{ESCAPES}",
                    }
                elif path == "/task/list":
                    body = [{"uuid": task_uuid}]
                elif path == f"/task/{task_uuid}/info":
                    body = {"uuid": task_uuid, "name": f"Survey{ESCAPES}", "status": {"code": 20}}
                elif path == f"/task/{task_uuid}/output":
                    body = [f"line one{ESCAPES}", f"{ESCAPES}line two"]
                else:
                    body = {"error": f"Not found{ESCAPES}"}
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.host, self.port = "127.0.0.1", int(self.server_address[1])


def test_node_text_reaches_the_terminal_without_escapes(tmp_path: Path) -> None:
    task_uuid = random_uuid()
    node = _HostileNode(task_uuid)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    try:
        cluster = ClusterODM(tmp_path, poll_interval=30)
        seed_store(cluster.data_dir, [node], (task_uuid, 0), random_uuid())  # type: ignore[list-item]
        with cluster.start(wait_nodes=1):
            wait_for_cli(cluster)
            cli = Cli(cluster.host, cluster.admin_cli_port)
            try:
                cli.greeting()
                start = len(cli.buf)
                shown = {
                    command: cli.command(command)
                    for command in (
                        "NODE LIST",
                        "NODE INFO 1",
                        "NODE BEST 1",
                        "ROUTE LIST",
                        f"ROUTE INFO {task_uuid}",
                        "TASK LIST",
                        f"TASK INFO {task_uuid}",
                        f"TASK OUTPUT {task_uuid}",
                    )
                }
            finally:
                cli.close()
            assert start == 0
            for command, lines in shown.items():
                for line in lines:
                    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", line), (command, line)
            assert shown["NODE LIST"][0].endswith("<engine: odm 3.5.1> <API: 2.2.4>")
            assert shown[f"TASK OUTPUT {task_uuid}"] == ["line one", "line two"]
            # JSON views escape C0 themselves (inert text); C1 characters, which JSON leaves raw, are gone.
            assert '  "name": "Survey\\u001b[2J\\u001b]0;owned\\u0007\\r",' in shown[f"TASK INFO {task_uuid}"]
    finally:
        node.shutdown()
        node.server_close()
