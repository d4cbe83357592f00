"""The telnet admin CLI: greeting, optional LOGIN, line-buffered commands, CRLF replies.

ClusterODM treats every TCP packet as one command; here input is buffered into lines, so
several commands in one packet, or one command split over packets, both work (spec 8.13).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import TYPE_CHECKING

from clusterodm import __version__
from clusterodm.admin.commands import OK, Commands

if TYPE_CHECKING:
    from clusterodm.services import Cluster

log = logging.getLogger("clusterodm.admin")

MAX_LINE_BYTES = 64 * 1024
"""A longer line is not a command anyone typed: the connection is closed."""

IAC = 0xFF
_NEGOTIATION = {0xFB, 0xFC, 0xFD, 0xFE}  # WILL, WONT, DO, DONT: followed by one option byte
_SB, _SE = 0xFA, 0xF0


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


class Session:
    """One CLI connection."""

    def __init__(self, cluster: Cluster, commands: Commands, writer: asyncio.StreamWriter) -> None:
        self._password = cluster.config.admin_pass
        self._commands = commands
        self._writer = writer
        self.logged_in = not self._password
        self._last = ""

    def write(self, *lines: str) -> None:
        for line in lines:
            self._writer.write(line.encode() + b"\r\n")

    def prompt(self) -> None:
        self._writer.write(b"#> " if self.logged_in else b"$> ")

    def greet(self, peer: str) -> None:
        self.write(f"Welcome {peer} ClusterODM:{__version__}")
        self.write("HELP for help" if self.logged_in else "LOGIN <LOGIN> to log-in")
        self.write("QUIT to quit")
        self.prompt()

    async def handle(self, line: str) -> bool:
        """Answer one input line; False when the connection must close."""
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
            return self._login(words)
        if words:
            self.write(*await self._commands.run(words))
        self.prompt()
        return True

    def _login(self, words: list[str]) -> bool:
        """Only `LOGIN <password>` is accepted before login; anything else closes, as in ClusterODM."""
        self._last = ""  # never replay a password with !!
        if not words:
            self.prompt()
            return True
        if len(words) != 2 or words[0].upper() != "LOGIN":
            return False
        if not hmac.compare_digest(words[1].encode(), self._password.encode()):
            log.warning("Admin CLI: wrong password, closing the connection")
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


async def _serve_connection(
    cluster: Cluster, commands: Commands, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    session = Session(cluster, commands, writer)
    peer = _peer(writer)
    buffer = LineBuffer()
    try:
        session.greet(peer)
        await writer.drain()
        while data := await reader.read(4096):
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
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve_cli(cluster: Cluster) -> None:
    """Listen on `admin_address:admin_cli_port` until cancelled."""
    config = cluster.config
    commands = Commands(cluster)
    connections: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections.add(task)
        try:
            await _serve_connection(cluster, commands, reader, writer)
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
