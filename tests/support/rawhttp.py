"""One HTTP/1.1 request over a plain socket, the target sent byte for byte.

HTTP client libraries normalise paths (`..` segments, percent-encoding) before sending; tests of
what a server does with a hostile path need the request exactly as an attacker would write it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    """Header names in lower case (a repeated header keeps its last value)."""
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def raw_request(
    host: str,
    port: int,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> RawReply:
    """Send `method target` as is (with `Connection: close`) and read the answer to the end."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawReply(int(status_line.split(" ")[1]), parsed, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2 :]
