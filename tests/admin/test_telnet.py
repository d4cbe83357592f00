"""The telnet admin CLI over real TCP: greeting, every command, login, buffering, `!!`."""

from __future__ import annotations

import json
import re
import select
from collections.abc import Callable
from pathlib import Path

import pytest

from support.admin_env import PASSWORD, Cli, Env, random_uuid
from support.clusterodm import ClusterODM
from support.procs import free_port
from support.simnode import SimNode

pytestmark = pytest.mark.both_backends  # on SQLite and on PostgreSQL: ids [sqlite], [pg]

ENGINE = "<engine: odm 3.5.1> <API: 2.2.4>"


def lines_of(env: Env) -> list[str]:
    return [f"127.0.0.1:{s.port}" for s in env.sims]


def silent(cli: Cli, seconds: float = 0.3) -> bool:
    """Nothing arrives within `seconds` (the server is waiting for the rest of a line)."""
    ready, _, _ = select.select([cli.sock], [], [], seconds)
    return not ready


def test_greeting_and_help(env: Env) -> None:
    cli = Cli(env.cluster.host, env.cluster.admin_cli_port)
    try:
        port = cli.sock.getsockname()[1]
        greeting = cli.greeting()
        assert re.fullmatch(
            rf"Welcome 127\.0\.0\.1:{port} ClusterODM:\S+\r\nHELP for help\r\nQUIT to quit\r\n#> ", greeting
        ), greeting
        help_lines = cli.command("HELP")
        assert len(help_lines) >= 17
        for line in help_lines:
            assert re.fullmatch(r"\S.* - \S.*", line), line
        for command in ("NODE ADD", "NODE BEST", "ROUTE LIST", "TASK OUTPUT", "ASR VIEWCMD", "QUIT"):
            assert any(line.startswith(command) for line in help_lines), command
        assert cli.command("help") == help_lines
    finally:
        cli.close()


def test_node_list_format(env: Env, cli: Cli) -> None:
    a, b, c = lines_of(env)
    expected = [
        f"1) {a} [online] [1/2] {ENGINE}",
        f"2) {b} [online] [0/1] {ENGINE}",
        f"3) {c} [online] [0/1] {ENGINE}",
        "",
    ]
    assert cli.command("NODE LIST") == expected
    assert cli.command("node list") == expected
    assert cli.command("NODE LOCK 2") == ["OK"]
    assert cli.command("NODE LOCK 2") == ["OK"]
    assert cli.command("NODE LIST")[1] == f"2) {b} [online] [0/1] {ENGINE} [L]"
    assert cli.command("NODE UNLOCK 2") == ["OK"]
    assert cli.command("NODE LIST") == expected
    assert cli.command("NODE LOCK 9") == ["FAIL"]
    assert cli.command("NODE UNLOCK x") == ["FAIL"]


def test_node_add_info_del(env: Env, cli: Cli) -> None:
    closed = free_port()
    assert cli.command(f"NODE ADD 127.0.0.1 {closed} s3cr3t-node-token") == ["OK"]
    assert cli.command(f"NODE ADD 127.0.0.1 {closed}") == ["FAIL"]  # (host, port) already there
    assert cli.command("NODE ADD 127.0.0.1 notaport") == ["FAIL"]
    assert cli.command("NODE ADD 127.0.0.1") == ["INVALID"]
    assert cli.command("NODE UPDATE") == ["OK"]  # the closed port fails its poll
    assert cli.command("NODE LIST")[3] == f"4) 127.0.0.1:{closed} [offline] [?/?] <engine: ?> <API: ?>"
    info_lines = cli.command("NODE INFO 4")
    text = "\n".join(info_lines)
    assert "s3cr3t" not in text
    info = json.loads(text)
    assert info["hostname"] == "127.0.0.1" and info["port"] == closed and "token" not in info
    assert info["lastRefreshed"] == 0 and info["info"] == {}
    assert info_lines[1].startswith('  "hostname"')  # 2-space indent, like JSON.stringify(x, null, 2)
    assert cli.command("NODE DEL 4") == ["OK"]
    assert cli.command("NODE DEL 4") == ["FAIL"]
    assert cli.command("NODE INFO 4") == ["INVALID"]
    # By address (what a script that added the node knows): numbers shift as other nodes go.
    assert cli.command(f"NODE ADD 127.0.0.1 {closed}") == ["OK"]
    assert cli.command(f"NODE DEL 127.0.0.2 {closed}") == ["FAIL"]
    assert cli.command("NODE DEL 127.0.0.1 notaport") == ["FAIL"]
    assert cli.command(f"NODE DEL 127.0.0.1 {closed}") == ["OK"]
    assert cli.command(f"NODE DEL 127.0.0.1 {closed}") == ["FAIL"]
    assert cli.command("NODE INFO") == ["INVALID"]
    assert len(cli.command("NODE LIST")) == 4


def test_node_info_and_update(env: Env, cli: Cli) -> None:
    before = json.loads("\n".join(cli.command("NODE INFO 1")))
    assert before["info"]["maxParallelTasks"] == 2 and before["info"]["engine"] == "odm"
    assert before["lastRefreshed"] > 0
    assert cli.command("NODE UPDATE") == ["OK"]
    after = json.loads("\n".join(cli.command("NODE INFO 1")))
    assert after["lastRefreshed"] > before["lastRefreshed"]  # polling is every 30 s: this was UPDATE


def test_node_add_polls_at_once_and_best_keeps_turns(env: Env, cli: Cli, tmp_path: Path) -> None:
    with SimNode(tmp_path, name="sim-d") as d:
        assert cli.command(f"NODE ADD {d.host} {d.port}") == ["OK"]
        try:
            wanted = f"4) {d.host}:{d.port} [online] [0/1] {ENGINE}"
            for _ in range(100):  # the add triggers a poll; the 30 s loop would be far too late
                if cli.command("NODE LIST")[3] == wanted:
                    break
                assert silent(cli, 0.05)
            assert cli.command("NODE LIST")[3] == wanted
            # Node b takes small tasks (smallest maxImages first).
            assert cli.command("NODE BEST 10") == [
                f"1) {env.sims[1].host}:{env.sims[1].port} [online] [0/1] {ENGINE}"
            ]
            # Over 50 images: c and d tie on everything; list order picks c, and since BEST does not
            # bump c's turn (ClusterODM's does), c stays the answer.
            c = f"1) {env.sims[2].host}:{env.sims[2].port} [online] [0/1] {ENGINE}"
            for _ in range(3):
                assert cli.command("NODE BEST 60") == [c]
            assert cli.command("NODE BEST x") == ["INVALID"]
        finally:
            assert cli.command("NODE DEL 4") == ["OK"]
    assert cli.command("NODE LOCK 1") == ["OK"]
    assert cli.command("NODE LOCK 3") == ["OK"]
    try:
        assert cli.command("NODE BEST 60") == ["No best node available"]
    finally:
        assert cli.command("NODE UNLOCK 1") == ["OK"]
        assert cli.command("NODE UNLOCK 3") == ["OK"]


def test_routes(env: Env, cli: Cli) -> None:
    a = env.sims[0]
    route = json.loads("\n".join(cli.command(f"ROUTE INFO {env.task_uuid}")))
    assert route["node"]["hostname"] == a.host and route["node"]["port"] == a.port
    assert "token" not in route["node"] and route["accessed"] > 0
    assert cli.command(f"ROUTE INFO {random_uuid()}") == ["INVALID"]
    assert cli.command("ROUTE INFO not-a-uuid") == ["INVALID"]
    assert list(json.loads("\n".join(cli.command("ROUTE LIST")))) == [env.task_uuid]
    assert list(json.loads("\n".join(cli.command("ROUTE LIST 1")))) == [env.task_uuid]
    assert cli.command("ROUTE LIST 2") == ["{}"]
    assert cli.command("ROUTE LIST 9") == ["INVALID"]


def test_unknown_commands_and_uuids_answer_invalid(env: Env, cli: Cli) -> None:
    unknown = random_uuid()
    for line in (
        "FOO",
        "NODE",
        "NODE FOO",
        "ROUTE FOO",
        "TASK FOO",
        "ASR FOO",
        "ASR VIEWCMD 3",  # no autoscaler configured
        f"TASK INFO {unknown}",
        f"TASK OUTPUT {unknown}",
        f"TASK CANCEL {unknown}",
        f"TASK REMOVE {unknown}",
        "TASK INFO",
        "TASK LIST 9",
    ):
        assert cli.command(line) == ["INVALID"], line
    assert cli.command("NODE LIST")[0].startswith("1) ")  # the session still works


def test_batched_and_split_input(env: Env, cli: Cli) -> None:
    cli.send(f"NODE LIST\r\nROUTE INFO {random_uuid()}\nnode best 10\r\n".encode())
    assert len(cli.reply()) == 4
    assert cli.reply() == ["INVALID"]
    assert cli.reply()[0].startswith("1) ")
    for part in (b"NO", b"DE LI", b"ST", b"\r"):
        cli.send(part)
        assert silent(cli), f"answered before the end of the line (after {part!r})"
    cli.send(b"\n")
    assert len(cli.reply()) == 4
    cli.send(b"\xff\xfd\x03\xff\xfb")  # telnet negotiation (IAC DO, IAC WILL split) is ignored
    cli.send(b"\x01NODE LIST\r\n")
    assert len(cli.reply()) == 4
    cli.send(b"\r\n")  # an empty line only prompts again
    assert cli.read_until(b"#> ") == b"#> "


def test_repeat_last_command(env: Env, cli: Cli) -> None:
    cli.send(b"!!\r\n")  # nothing to repeat yet
    assert cli.read_until(b"#> ") == b"#> "
    first = cli.command("NODE BEST 10")
    assert cli.command("!!") == first
    assert cli.command("ROUTE FOO") == ["INVALID"]
    assert cli.command("!!") == ["INVALID"]


def test_quit(env: Env, cli: Cli) -> None:
    cli.send(b"quit\r\n")
    assert cli.read_to_eof() == b"Bye!\r\n"


def test_login_flow(guarded: ClusterODM) -> None:
    def connect() -> Cli:
        client = Cli(guarded.host, guarded.admin_cli_port)
        greeting = client.greeting()
        assert greeting.endswith("\r\nLOGIN <LOGIN> to log-in\r\nQUIT to quit\r\n$> "), greeting
        return client

    attempts: list[Callable[[Cli], None]] = [
        lambda c: c.send(b"LOGIN wrong-password\r\n"),
        lambda c: c.send(b"HELP\r\n"),
        lambda c: c.send(b"NODE LIST\r\n"),
        lambda c: c.send(f"LOGIN {PASSWORD}x\r\n".encode()),
    ]
    for attempt in attempts:
        client = connect()
        attempt(client)
        assert client.read_to_eof() == b""  # closed silently, as ClusterODM does
        client.close()
    client = connect()
    try:
        client.send(b"LOG")
        assert silent(client)
        client.send(f"IN {PASSWORD}\r\n".encode())
        assert client.read_until(b"#> ") == b"OK\r\nHELP for help\r\n#> "
        assert client.command("NODE LIST") == [""]
        assert client.command("!!") == [""]
        client.send(b"QUIT\r\n")
        assert client.read_to_eof() == b"Bye!\r\n"
    finally:
        client.close()
