"""A node whose downloads never end, or whose tasks never answer, to see from the node's side
when the proxy lets go.

    python endlessnode.py PORT

`GET /info` answers like NodeODM; `GET /task/<uuid>/download/all.zip` announces 10 GB and sends
64 KiB every 5 ms for as long as the connection lives; `GET /stats` tells how many downloads are
being sent right now and how many ended because the peer closed the connection.

Silent paths: `GET /task/<uuid>/info` and `/output` are read and never answered; `GET
/task/<uuid>/download/stalled.zip` announces 1 MB, sends 64 KiB and then nothing. They hold the
connection until the peer closes it; `GET /silent-stats` tells how many are held right now and how
many the peer closed.
"""

from __future__ import annotations

import asyncio
import json
import sys

INFO = {
    "version": "2.2.4", "taskQueueCount": 0, "totalMemory": 1 << 34, "availableMemory": 1 << 33,
    "cpuCores": 2, "maxImages": None, "maxParallelTasks": 2, "engineVersion": "3.5.1", "engine": "odm",
}  # fmt: skip
stats = {"sending": 0, "closed_by_peer": 0}
silent_stats = {"held": 0, "closed_by_peer": 0}


def answer(writer: asyncio.StreamWriter, body: bytes) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            if target.startswith("/info"):
                answer(writer, json.dumps(INFO).encode())
            elif target.startswith("/stats"):
                answer(writer, json.dumps(stats).encode())
            elif target.startswith("/silent-stats"):
                answer(writer, json.dumps(silent_stats).encode())
            elif target.split("?")[0].endswith(("/info", "/output", "/download/stalled.zip")):
                await silent(reader, writer, target)
                return
            elif "/download/" in target:
                await endless(writer)
                return
            else:
                answer(writer, b'{"error":"not here"}')
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def endless(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 10000000000\r\n\r\n")
    stats["sending"] += 1
    try:
        while True:
            writer.write(b"\0" * 65536)
            await writer.drain()
            await asyncio.sleep(0.005)
    except ConnectionError:
        stats["closed_by_peer"] += 1
    finally:
        stats["sending"] -= 1


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> None:
    if "/download/" in target:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 1048576\r\n\r\n")
        writer.write(b"\0" * 65536)
    silent_stats["held"] += 1
    try:
        while await reader.read(65536):
            pass  # anything more the peer sends is ignored; an empty read is its close
    except ConnectionError:
        pass
    finally:
        silent_stats["held"] -= 1
        silent_stats["closed_by_peer"] += 1


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
