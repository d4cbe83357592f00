"""Fixtures for simulator tests: generated images, simulator nodes, a webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.images import make_images
from support.simnode import SimNode

FAST = ("--processing-seconds", "0.3")


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    return make_images(tmp_path / "images", 30)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimNode]:
    """A default node shared by a module: 2 slots, fast processing, 300 kB assets."""
    with SimNode(tmp_path_factory.mktemp("sim"), *FAST, "-q", "2", "--asset-size", "300000") as node:
        yield node


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., SimNode]]:
    """Factory for nodes with custom flags; all are stopped at the end of the test."""
    nodes: list[SimNode] = []

    def start(*flags: str) -> SimNode:
        node = SimNode(tmp_path, *flags).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


class WebhookReceiver:
    """A real HTTP server recording POSTed JSON; answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail_first = fail_first
        self.event = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.event:
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= 1
                    receiver.received.append(json.loads(body))
                    receiver.paths.append(self.path)
                    receiver.event.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.event:
            if not self.event.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"only {len(self.received)} of {count} webhook calls arrived")
            return list(self.received)


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    receivers: list[WebhookReceiver] = []

    def make(fail_first: int = 0) -> WebhookReceiver:
        receiver = WebhookReceiver(fail_first)
        receiver.thread.start()
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.server.shutdown()
        receiver.server.server_close()
