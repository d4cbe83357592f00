"""A minimal NodeODM-like HTTP server for the cluster tests (run as a separate process).

Serves just what the control plane calls: /info (with token check), /options, /task/list,
/task/{uuid}/info (echoing the query it received) and POST /task/cancel (echoing the form), so
tests can check what actually went over the wire.

usage: python fake_node_server.py PORT [TOKEN]
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    token = ""

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _reply(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        if self.token and query.get("token", [""])[0] != self.token:
            self._reply({"error": "Invalid authentication token: token does not match."})
            return False
        return True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        if not self._authorized(query):
            return
        parts = url.path.strip("/").split("/")
        if url.path == "/info":
            self._reply(
                {
                    "version": "2.2.4",
                    "taskQueueCount": 1,
                    "totalMemory": 8,
                    "availableMemory": 4,
                    "cpuCores": 2,
                    "maxImages": None,
                    "maxParallelTasks": 2,
                    "engineVersion": "3.5.1",
                    "engine": "odm",
                }
            )
        elif url.path == "/options":
            self._reply([{"name": "dsm", "type": "bool", "value": "false", "domain": "bool", "help": ""}])
        elif url.path == "/task/list":
            self._reply([{"uuid": "00000000-0000-4000-8000-000000000001"}])
        elif len(parts) == 3 and parts[0] == "task" and parts[2] == "info":
            self._reply({"uuid": parts[1], "status": {"code": 40}, "query": query})
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        if not self._authorized(query):
            return
        self._reply(
            {
                "success": True,
                "path": url.path,
                "form": form,
                "query": query,
                "contentType": self.headers.get("Content-Type"),
            }
        )


def main() -> None:
    Handler.token = sys.argv[2] if len(sys.argv) > 2 else ""
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
