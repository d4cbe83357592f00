"""A TCP relay in front of a node that can fail one upload request, for tests of a proxy's retries.

with Relay(node) as relay:      # clusterodm is given relay.host/relay.port as the node
    relay.fail_upload(2, "cut", fraction=0.5)

Bytes are copied both ways unchanged, so the node behind it answers everything. The `number`-th
upload request (`POST /task/new/upload/...`, counted from the relay's start) fails once:
- "cut": the node gets the request head and `fraction` of its body, then the end of the connection
  (after it read what came before); the sender's connection is reset first, so the node's answer
  to the cut body never reaches it. A NodeODM node keeps the parts of such a request, complete and
  cut-off ones (spec 9.1).
- "late": as "cut", but the node gets those bytes only after two more `/task/new/init` requests
  were answered (a busy node reading a cut-off request after the sender cleared and re-initialised
  the task: it writes the parts into the new upload); commits wait until the node is done with it.
- "refuse": the body is read to its end and never reaches the node; the sender gets HTTP 500.
Upload requests are recognised by the first bytes of a connection (the forwarder opens one
connection per upload request).
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from typing import Literal, Protocol, Self

from support.procs import free_port

Mode = Literal["cut", "late", "refuse"]
UPLOAD = b"POST /task/new/upload/"
INIT = b"POST /task/new/init"
COMMIT = b"POST /task/new/commit/"
REFUSED = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HasAddress(Protocol):
    host: str
    port: int


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed peer or a broken network does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Relay:
    def __init__(self, node: HasAddress) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._target = (node.host, node.port)
        self._listener = socket.create_server((self.host, self.port))
        self._lock = threading.Lock()
        self._uploads = 0
        self._inits = 0
        self._init_seen = threading.Condition(self._lock)
        self._late: threading.Event | None = None
        """While a late delivery runs: commits wait for it."""
        self.upload_targets: list[str] = []
        """The request target of each upload request seen, in order."""
        self.request_lines: list[str] = []
        """The request line (`POST /task/remove HTTP/1.1`) of each connection's first request, in order."""
        self._fail: tuple[int, Mode, float] | None = None
        self.failed = threading.Event()
        """Set once the chosen request has been failed."""
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def fail_upload(self, number: int, mode: Mode, fraction: float = 0.5) -> None:
        """Fail the `number`-th upload request (1 = the first one the relay sees)."""
        with self._lock:
            self._fail = (number, mode, fraction)

    @property
    def uploads(self) -> int:
        with self._lock:
            return self._uploads

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            first = client.recv(65536)
            if not first:
                client.close()
                return
            with self._lock:
                self.request_lines.append(first.split(b"\r\n", 1)[0].decode("latin-1"))
            plan = self._plan(first)
            if plan is not None and plan[0] == "refuse":
                self._refuse(client, first)
                return
            if plan is not None and plan[0] == "late":
                self._deliver_late(client, first, plan[1])
                return
            late = self._late
            if first.startswith(COMMIT) and late is not None:
                late.wait(30)
            upstream = self._track(socket.create_connection(self._target))
        except OSError:
            client.close()
            return
        back = threading.Thread(target=self._copy, args=(upstream, client, None), daemon=True)
        back.start()
        limit = None
        if plan is not None:
            head, _, _ = first.partition(b"\r\n\r\n")
            limit = len(head) + 4 + int(_content_length(head) * plan[1])
        self._copy(client, upstream, limit, first)
        back.join(30)
        if first.startswith(INIT):  # answered: the node has the task initialised
            with self._lock:
                self._inits += 1
                self._init_seen.notify_all()

    def _plan(self, first: bytes) -> tuple[Mode, float] | None:
        if not first.startswith(UPLOAD):
            return None
        with self._lock:
            self._uploads += 1
            self.upload_targets.append(first.split(b" ", 2)[1].decode("latin-1"))
            if self._fail is None or self._fail[0] != self._uploads:
                return None
            _, mode, fraction = self._fail
            return mode, fraction

    def _deliver_late(self, client: socket.socket, first: bytes, fraction: float) -> None:
        head, _, _ = first.partition(b"\r\n\r\n")
        limit = len(head) + 4 + int(_content_length(head) * fraction)
        held = bytearray(first)
        while len(held) < limit:
            data = client.recv(1 << 16)
            if not data:
                break
            held += data
        with self._lock:
            inits = self._inits  # before the reset: the sender reacts to it at once
        _reset(client)
        with self._lock:
            self._init_seen.wait_for(lambda: self._inits >= inits + 2, timeout=30)
            self._late = done = threading.Event()
        upstream = self._track(socket.create_connection(self._target, timeout=10))
        try:
            upstream.sendall(bytes(held[:limit]))
            upstream.shutdown(socket.SHUT_WR)
            while upstream.recv(1 << 16):  # the node's answer: it is done with the request
                pass
        except OSError:
            pass
        finally:
            upstream.close()
            self.failed.set()
            done.set()

    def _refuse(self, client: socket.socket, first: bytes) -> None:
        head, _, body = first.partition(b"\r\n\r\n")
        left = _content_length(head) - len(body)
        while left > 0:
            data = client.recv(min(left, 1 << 20))
            if not data:
                break
            left -= len(data)
        client.sendall(REFUSED)
        client.close()
        self.failed.set()

    def _copy(self, source: socket.socket, sink: socket.socket, limit: int | None, data: bytes = b"") -> None:
        """Copy (`data` first) until either side ends; with `limit`, once that many bytes went through,
        reset the source, then end the sink's side (it still reads what it got: a reset would drop it)."""
        sent = 0
        try:
            while True:
                data = data or source.recv(1 << 16)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    # The sender is reset before the node sees the end: the node answers a cut body
                    # (with an error), and that answer must never reach the sender, which would
                    # take it for a node that refused the request and stored nothing.
                    _reset(source)
                    sink.shutdown(socket.SHUT_WR)
                    self.failed.set()
                    return
                sink.sendall(data)
                sent += len(data)
                data = b""
        except OSError:
            pass
        for sock in (sink, source):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0
