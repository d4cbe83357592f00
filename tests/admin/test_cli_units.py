"""The CLI's defences in-process: what counts as HTTP, what is stripped before printing, how
wrong passwords are slowed down, and the idle timeout on a real loopback socket."""

from __future__ import annotations

import asyncio
import time

import pytest

from clusterodm.admin.commands import HELP
from clusterodm.admin.telnet import CliSession, LoginThrottle, looks_like_http, serve_connection
from clusterodm.admin.views import terminal_safe


@pytest.mark.parametrize(
    "line",
    [
        "POST / HTTP/1.1",
        "GET /info HTTP/1.0",
        "get / http/1.1",
        "OPTIONS * HTTP/2",
        "PRI * HTTP/2.0",
        "GET /",  # HTTP/0.9
        "NODE ADD 127.0.0.1 3999 HTTP/1.1",  # ends like a request line: nobody types that
        "Host: 127.0.0.1:8080",
        "Content-Type: text/plain",
        "content-length: 25",
        'sec-ch-ua: "Chromium";v="156"',
        "Upgrade-Insecure-Requests: 1",
        "X-Empty:",
        "  Host: indented",
    ],
)
def test_http_lines_are_recognised(line: str) -> None:
    assert looks_like_http(line)


@pytest.mark.parametrize(
    "line",
    [
        *(entry.split(" - ")[0] for entry in HELP),  # every command as HELP documents it
        "NODE ADD 127.0.0.1 3999",
        "NODE ADD ::1 3000 tok:en",
        "node add example.com 3000 token-with-HTTP/1.1-inside",
        "LOGIN pass:word",
        "LOGIN Host:",
        "TASK OUTPUT 0b5c6a1e-1111-4222-8333-444455556666 10",
        "ASR VIEWCMD 100",
        "!!",
        "",
        "x=",  # what follows a text/plain form's body: harmless, answered INVALID
    ],
)
def test_cli_commands_are_not_http(line: str) -> None:
    assert not looks_like_http(line)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("odm\x1b[2J\x1b[1;31m3.5\x1b[0m", "odm3.5"),  # clear screen, colours
        ("a\x1b]0;new window title\x07b", "ab"),  # OSC ended by BEL
        ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # OSC 8 hyperlink, ended by ST
        ("x\x9b2Jy\x9d0;t\x9cz", "xyz"),  # 8-bit CSI and OSC
        ("\x1b(0qqq\x1b(B", "qqq"),  # charset switch
        ("cut\x1b", "cut"),
        ("\x1b]0;unterminated", ""),
        ("tab\tcr\rnul\x00del\x7fnel\x85bell\x07", "tabcrnuldelnelbell"),
        ("ok: é, 中文, ü — plain text stays", "ok: é, 中文, ü — plain text stays"),
    ],
)
def test_terminal_safe(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


class FakeTime:
    """A clock that moves only when the throttle sleeps, recording each wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def _test_wrong_passwords_wait_longer_and_longer_per_host() -> None:
    t = FakeTime()
    throttle = LoginThrottle(0.5, 4.0, 60.0, clock=t.clock, sleep=t.sleep)
    for _ in range(6):
        assert await throttle.check("10.0.0.1", False) is False
    assert t.waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert await throttle.check("10.0.0.2", False) is False  # another host has its own count
    assert t.waits[-1] == 0.5
    assert await throttle.check("10.0.0.1", True) is True  # a good password costs nothing...
    assert len(t.waits) == 7
    assert await throttle.check("10.0.0.1", False) is False  # ...and forgives the failures
    assert t.waits[-1] == 0.5
    t.now += 61  # failures older than the window are forgotten
    await throttle.check("10.0.0.2", False)
    assert t.waits[-1] == 0.5


async def _test_parallel_guesses_from_one_host_queue_up() -> None:
    t = FakeTime()
    throttle = LoginThrottle(1.0, 100.0, 600.0, clock=t.clock, sleep=t.sleep)
    results = await asyncio.gather(*(throttle.check("10.0.0.9", False) for _ in range(5)))
    assert results == [False] * 5
    assert t.waits == [1.0, 2.0, 4.0, 8.0, 16.0]  # one after the other, not five times 1 s at once


class Echo:
    """Answers every command with its words (the session under test is what matters here)."""

    async def run(self, words: list[str]) -> list[str]:
        return [" ".join(words), "\x1b[2Jnode text"]


async def _start(idle_s: float, password: str = "") -> asyncio.Server:
    throttle = LoginThrottle(0.2)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = CliSession(password, Echo(), writer, "127.0.0.1:1", throttle)
        await serve_connection(session, reader, writer, idle_s)

    return await asyncio.start_server(on_connect, "127.0.0.1", 0)


async def _read_to_eof(reader: asyncio.StreamReader, limit_s: float = 5.0) -> bytes:
    async with asyncio.timeout(limit_s):
        return await reader.read(-1)


async def _test_idle_timeout_closes_and_activity_keeps_open() -> None:
    server = await _start(0.3)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        await reader.readuntil(b"#> ")
        for _ in range(4):  # 0.6 s of activity, each gap shorter than the timeout
            await asyncio.sleep(0.15)
            writer.write(b"NODE LIST\r\n")
            assert await reader.readuntil(b"#> ") == b"NODE LIST\r\nnode text\r\n#> "  # escapes gone
        idle_from = time.monotonic()
        assert idle_from - start > 0.5
        assert await _read_to_eof(reader) == b"\r\nIdle for 0.3 s, closing the connection.\r\n"
        assert 0.25 <= time.monotonic() - idle_from < 2
        writer.close()


async def _test_http_in_one_packet_stops_at_the_request_line() -> None:
    server = await _start(5)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readuntil(b"#> ")
        writer.write(b"FIRST\r\nPOST / HTTP/1.1\r\nHost: x\r\n\r\nNODE ADD 127.0.0.1 3999\r\n")
        assert await _read_to_eof(reader) == b"FIRST\r\nnode text\r\n#> "
        writer.close()


async def _test_wrong_password_is_answered_late() -> None:
    server = await _start(5, password="right")
    port = server.sockets[0].getsockname()[1]
    async with server:
        for expected in (0.2, 0.4):  # the delay doubles for the same host
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readuntil(b"$> ")
            start = time.monotonic()
            writer.write(b"LOGIN wrong\r\n")
            assert await _read_to_eof(reader) == b""
            assert time.monotonic() - start >= expected * 0.9
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readuntil(b"$> ")
        writer.write(b"LOGIN right\r\nNODE LIST\r\n")
        assert (
            await reader.readuntil(b"node text\r\n#> ")
            == b"OK\r\nHELP for help\r\n#> NODE LIST\r\nnode text\r\n#> "
        )
        writer.close()


def test_wrong_passwords_wait_longer_and_longer_per_host() -> None:
    asyncio.run(_test_wrong_passwords_wait_longer_and_longer_per_host())


def test_parallel_guesses_from_one_host_queue_up() -> None:
    asyncio.run(_test_parallel_guesses_from_one_host_queue_up())


def test_idle_timeout_closes_and_activity_keeps_open() -> None:
    asyncio.run(_test_idle_timeout_closes_and_activity_keeps_open())


def test_http_in_one_packet_stops_at_the_request_line() -> None:
    asyncio.run(_test_http_in_one_packet_stops_at_the_request_line())


def test_wrong_password_is_answered_late() -> None:
    asyncio.run(_test_wrong_password_is_answered_late())
