"""A scripted HTTP/1.1 node for process-level proxy tests (run as a subprocess; `conftest.ScriptedNode`).

    python rawnode.py PORT

Every response carries `x-conn: <n>`, the number of the TCP connection it was sent on, so tests
can tell reuse from reconnection. Paths:
  /length/N       N bytes with Content-Length (keep-alive)
  /chunked        a chunked body in several writes, with a chunk extension and a trailer
  /until-close    a body framed by closing the connection (no length, no chunking)
  /then-close     a normal keep-alive answer, then the server closes the idle connection
  /reset          Content-Length 1,000,000, 100,000 bytes sent, then a TCP reset
  /echo           the request line, headers and body as JSON (the body de-chunked)
  /continue       a 100 Continue interim response before the real one
Every request line is printed to stdout (the test's log), so tests can tell what reached the node.
Echo answers carry a weak `ETag`, and a request whose `If-None-Match` names it gets NodeODM's 304
with an empty body.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import sys

COUNTER = itertools.count(1)
ECHO_ETAG = 'W/"echo"'


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return await reader.readexactly(int(headers.get("content-length", "0")))


def head(status: str, conn_id: int, *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"x-conn: {conn_id}", "keep-alive: timeout=30", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn_id = next(COUNTER)
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = raw.decode("latin-1").split("\r\n")[:-2]
            method, target, _ = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await read_body(reader, headers)
            print(lines[0], flush=True)
            if target.startswith("/length/"):
                size = int(target.rsplit("/", 1)[1])
                writer.write(head("200 OK", conn_id, f"content-length: {size}") + b"x" * size)
            elif target == "/chunked":
                writer.write(head("200 OK", conn_id, "transfer-encoding: chunked", "content-length: 999"))
                for part in (b"hello ", b"chunked ", b"world"):
                    writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                writer.write(b"0\r\nx-trailer: yes\r\n\r\n")
            elif target == "/until-close":
                writer.write(head("200 OK", conn_id, "connection: close") + b"the end is EOF")
                await writer.drain()
                writer.close()
                return
            elif target == "/then-close":
                writer.write(head("200 OK", conn_id, "content-length: 2") + b"ok")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.close()
                return
            elif target == "/reset":
                writer.write(head("200 OK", conn_id, "content-length: 1000000") + b"y" * 100_000)
                await writer.drain()
                await asyncio.sleep(0.1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            elif target == "/continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                writer.write(head("201 Created", conn_id, "content-length: 4") + b"done")
            elif headers.get("if-none-match") == ECHO_ETAG:
                writer.write(head("304 Not Modified", conn_id, f"etag: {ECHO_ETAG}"))
            else:
                echo = json.dumps(
                    {"request": lines[0], "headers": headers, "body": body.decode("latin-1")}
                ).encode()
                writer.write(
                    head(
                        "200 OK",
                        conn_id,
                        "content-type: application/json",
                        f"content-length: {len(echo)}",
                        f"etag: {ECHO_ETAG}",
                    )
                    + echo
                )
            await writer.drain()
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
