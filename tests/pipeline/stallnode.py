"""A node that looks healthy but never reads an upload body: `python stallnode.py PORT SIM_URL`.

It answers `/info` and `/options` with a real simulator's answers (taken once at start, advertising
plenty of free slots so the ranking likes it), accepts `/task/new/init`, and on `/task/new/upload/...`
keeps the connection open without reading: the sender's socket buffers fill and nothing moves, as
with a hung NodeODM. Everything else gets NodeODM's JSON error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return bytes(reply.read())


async def main(port: int, sim_url: str) -> None:
    info = json.loads(fetch(f"{sim_url}/info"))
    info.update({"taskQueueCount": 0, "maxParallelTasks": 50})
    answers = {"/info": json.dumps(info).encode(), "/options": fetch(f"{sim_url}/options")}
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        method, target = head.split(" ", 2)[:2]
        path = target.split("?")[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in head.split("\r\n")[1:])
        }
        if path.startswith("/task/new/upload/"):
            held.append(writer)  # never read, never answer
            return
        length = int(headers.get("content-length") or 0)
        if length:
            await reader.readexactly(length)
        if method == "GET" and path in answers:
            body = answers[path]
        elif path == "/task/new/init":
            body = json.dumps({"uuid": headers.get("set-uuid", "")}).encode()
        else:
            body = b'{"error":"not available on this stalled node"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"stall node listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
