"""The telnet admin CLI: greeting, optional LOGIN, line-buffered commands, CRLF replies.

ClusterODM treats every TCP packet as one command; here input is buffered into lines, so
several commands in one packet, or one command split over packets, both work (spec 8.13).

Without `--admin-pass` a connection is logged in from its first byte, so anything that can
open a TCP connection to the port can type commands. A web page can: an HTML form posted to
`http://127.0.0.1:8080/` (or `curl`) sends an HTTP request whose body lines would run as
commands. A line that looks like HTTP (a request line or a header) therefore closes the
connection before any later line runs. Sessions idle for `admin_cli_idle_timeout` are closed,
wrong passwords are answered more and more slowly per peer, and everything printed is
stripped of terminal control sequences, since part of it comes from nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from clusterodm import __version__
from clusterodm.admin.commands import OK, Commands
from clusterodm.admin.views import terminal_safe
from clusterodm.logs import VERBOSE

if TYPE_CHECKING:
    from clusterodm.config import Config

log = logging.getLogger("clusterodm.admin")

MAX_LINE_BYTES = 64 * 1024
"""A longer line is not a command anyone typed: the connection is closed."""

IAC = 0xFF
_NEGOTIATION = {0xFB, 0xFC, 0xFD, 0xFE}  # WILL, WONT, DO, DONT: followed by one option byte
_SB, _SE = 0xFA, 0xF0

_HTTP_REQUEST_LINE = re.compile(
    r"^(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI)\s"  # a method, then the target
    r"|\sHTTP/\d+(?:\.\d+)?$",  # or any line ending like a request line
    re.IGNORECASE,
)
_HTTP_HEADER_LINE = re.compile(r"^[A-Za-z0-9-]+:(?:\s|$)")  # `Host: x`; no CLI word ends with ':'


def looks_like_http(line: str) -> bool:
    """Whether `line` is part of an HTTP request (request line or header), never a CLI command.

    No command of the CLI starts with an HTTP method or with a word ending in ':', so nothing an
    operator types is taken for HTTP.
    """
    text = line.strip()
    return bool(_HTTP_REQUEST_LINE.search(text) or _HTTP_HEADER_LINE.match(text))


class LineTooLong(Exception):
    pass


class LineBuffer:
    """Turns a byte stream into lines (LF, CRLF or CR NUL ends), dropping telnet negotiation."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._pending_iac = bytearray()  # an IAC sequence cut by a packet boundary

    def _strip_telnet(self, data: bytes) -> bytes:
        data = bytes(self._pending_iac) + data
        self._pending_iac.clear()
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            byte = data[i]
            if byte != IAC:
                out.append(byte)
                i += 1
                continue
            if i + 1 >= n:
                self._pending_iac.extend(data[i:])
                break
            cmd = data[i + 1]
            if cmd == IAC:  # escaped 0xFF data byte
                out.append(IAC)
                i += 2
            elif cmd in _NEGOTIATION:
                if i + 2 >= n:
                    self._pending_iac.extend(data[i:])
                    break
                i += 3
            elif cmd == _SB:
                end = data.find(bytes((IAC, _SE)), i + 2)
                if end < 0:
                    self._pending_iac.extend(data[i:])
                    break
                i = end + 2
            else:  # a two-byte command (IP, AYT, NOP...)
                i += 2
        return bytes(out)

    def feed(self, data: bytes) -> list[str]:
        """Complete lines in `data` (plus what was buffered); LineTooLong past the limit."""
        self._buf += self._strip_telnet(data)
        lines: list[str] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            lines.append(raw.rstrip(b"\r\0").decode("utf-8", "replace"))
        # Telnet in character mode ends lines with CR NUL.
        while (end := self._buf.find(b"\r\0")) >= 0:
            lines.append(bytes(self._buf[:end]).decode("utf-8", "replace"))
            del self._buf[: end + 2]
        if len(self._buf) > self._max or len(self._pending_iac) > self._max:
            raise LineTooLong
        return lines


class CommandRunner(Protocol):
    """What a session needs from the command set (`Commands`)."""

    async def run(self, words: list[str]) -> list[str]:
        """The lines answering one command."""
        ...


LOGIN_DELAY_S = 0.5
"""Wait before answering a peer's first wrong password; it doubles with each further one."""
LOGIN_DELAY_MAX_S = 30.0
LOGIN_FAILURES_FORGOTTEN_S = 15 * 60.0
"""A peer's wrong passwords older than this no longer slow it down."""


@dataclass
class _Failures:
    count: int
    last: float
    lock: asyncio.Lock


class LoginThrottle:
    """Slows down password guessing: each peer host's LOGIN checks run one at a time, and a wrong
    password is answered only after a delay that doubles per failure (0.5 s, 1 s, 2 s... 30 s).

    Parallel connections from one host queue behind the same lock, so they cannot guess faster
    than one connection would.
    """

    def __init__(
        self,
        base_s: float = LOGIN_DELAY_S,
        max_s: float = LOGIN_DELAY_MAX_S,
        forget_s: float = LOGIN_FAILURES_FORGOTTEN_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._base, self._max, self._forget = base_s, max_s, forget_s
        self._clock, self._sleep = clock, sleep
        self.peers: dict[str, _Failures] = {}

    def _entry(self, host: str) -> _Failures:
        now = self._clock()
        if len(self.peers) > 1000:  # keep memory bounded: forget peers quiet for long
            for key in [k for k, v in self.peers.items() if now - v.last > self._forget]:
                if not self.peers[key].lock.locked():
                    del self.peers[key]
        entry = self.peers.get(host)
        if entry is None:
            entry = self.peers[host] = _Failures(0, now, asyncio.Lock())
        elif now - entry.last > self._forget:
            entry.count = 0
        return entry

    def delay(self, host: str) -> float:
        """The wait the next wrong password from `host` costs."""
        entry = self.peers.get(host)
        count = entry.count if entry is not None and self._clock() - entry.last <= self._forget else 0
        return min(self._base * 2**count, self._max)

    async def check(self, host: str, good: bool) -> bool:
        """`good`, once it is this attempt's turn and, if wrong, after the peer's delay."""
        entry = self._entry(host)
        async with entry.lock:
            if good:
                entry.count = 0
                return True
            await self._sleep(self.delay(host))
            entry.count += 1
            entry.last = self._clock()
            return False


class CliSession:
    """One CLI connection: login state, `!!` history and the prompt."""

    def __init__(
        self,
        password: str,
        commands: CommandRunner,
        writer: asyncio.StreamWriter,
        peer: str,
        throttle: LoginThrottle,
    ) -> None:
        self._password = password
        self._commands = commands
        self._writer = writer
        self.peer = peer
        self._throttle = throttle
        self.logged_in = not password
        self._last = ""

    def write(self, *lines: str) -> None:
        """Lines with CRLF; control sequences are stripped, since node text is part of them."""
        for line in lines:
            self._writer.write(terminal_safe(line).encode() + b"\r\n")

    def prompt(self) -> None:
        self._writer.write(b"#> " if self.logged_in else b"$> ")

    def greet(self) -> None:
        self.write(f"Welcome {self.peer} ClusterODM:{__version__}")
        self.write("HELP for help" if self.logged_in else "LOGIN <LOGIN> to log-in")
        self.write("QUIT to quit")
        self.prompt()

    async def handle(self, line: str) -> bool:
        """Answer one input line; False when the connection must close."""
        if looks_like_http(line):
            log.warning(
                "Admin CLI: %s sent an HTTP request (%r), not a command; closing the connection "
                "without running anything. A web page or HTTP client is pointed at the CLI port",
                self.peer,
                line.strip()[:100],
            )
            return False
        text = line.strip()
        if text == "!!":
            text = self._last
        elif text:
            self._last = text
        words = text.split()
        if words and words[0].upper() == "QUIT":
            self.write("Bye!")
            return False
        if not self.logged_in:
            return await self._login(words)
        if words:
            self.write(*await self._commands.run(words))
        self.prompt()
        return True

    async def _login(self, words: list[str]) -> bool:
        """Only `LOGIN <password>` is accepted before login; anything else closes, as in ClusterODM."""
        self._last = ""  # never replay a password with !!
        if not words:
            self.prompt()
            return True
        if len(words) != 2 or words[0].upper() != "LOGIN":
            return False
        good = hmac.compare_digest(words[1].encode(), self._password.encode())
        host = self.peer.rpartition(":")[0]
        if not await self._throttle.check(host, good):
            log.warning("Admin CLI: wrong password from %s, closing the connection", self.peer)
            return False
        self.logged_in = True
        self.write(OK, "HELP for help")
        self.prompt()
        return True


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unknown:0"


async def serve_connection(
    session: CliSession,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    idle_timeout_s: float,
) -> None:
    peer = session.peer
    buffer = LineBuffer()
    log.log(VERBOSE, "Admin CLI: %s connected", peer)
    try:
        session.greet()
        await writer.drain()
        while True:
            try:
                async with asyncio.timeout(idle_timeout_s):
                    data = await reader.read(4096)
            except TimeoutError:
                log.info("Admin CLI: %s idle for %g s; closing", peer, idle_timeout_s)
                session.write("", f"Idle for {idle_timeout_s:g} s, closing the connection.")
                await writer.drain()
                return
            if not data:
                return
            # Every line of the packet is run in order; the first one that asks to close (QUIT,
            # a failed LOGIN, anything HTTP) ends the connection before the lines after it.
            for line in buffer.feed(data):
                if not await session.handle(line):
                    await writer.drain()
                    return
                await writer.drain()
    except LineTooLong:
        log.warning("Admin CLI: %s sent a line over %d bytes; closing", peer, MAX_LINE_BYTES)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        log.log(VERBOSE, "Admin CLI: %s disconnected", peer)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve_cli(commands: Commands, config: Config) -> None:
    """Listen on `admin_address:admin_cli_port` until cancelled."""
    throttle = LoginThrottle()
    connections: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections.add(task)
        try:
            session = CliSession(config.admin_pass, commands, writer, _peer(writer), throttle)
            await serve_connection(session, reader, writer, config.admin_cli_idle_timeout)
        finally:
            if task is not None:
                connections.discard(task)

    server = await asyncio.start_server(on_connect, config.admin_address, config.admin_cli_port)
    log.info("Admin CLI on %s:%d (telnet)", config.admin_address, config.admin_cli_port)
    try:
        async with server:
            await server.serve_forever()
    finally:
        for task in list(connections):
            task.cancel()
