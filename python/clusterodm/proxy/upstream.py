"""The forwarding HTTP client behind one small interface, so the hot path can swap implementations.

Client traffic to nodes (task info polls, downloads, cancel/remove/restart) goes through here;
control-plane calls use `Cluster.http` (httpx). `bench/bench_proxy.py` compares the backends on
the routed `GET /task/{uuid}/info` path; the default is the fastest one measured (`h1`, the
built-in client of `upstream_h1`). Select another with the `CLUSTERODM_UPSTREAM` environment
variable (`h1`, `pyreqwest`, `aiohttp`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

Headers = list[tuple[bytes, bytes]]

DEFAULT_BACKEND = "h1"
CONNECT_TIMEOUT_S = 10.0

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)


class UpstreamGone(Exception):
    """The node refused or reset the connection: the client's connection is dropped so it retries."""


class UpstreamError(Exception):
    """Any other failure talking to the node (reported to the client as a JSON error)."""


class UpstreamResponse(Protocol):
    status: int
    headers: Headers
    """Response headers, hop-by-hop ones already removed, names lower-case."""
    content_length: int | None

    async def read(self) -> bytes:
        """The whole body (for small responses)."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, as the node sends it."""

    async def aclose(self) -> None:
        """Release the connection (closing it if the body was not fully read)."""


class Upstream(Protocol):
    async def request(
        self,
        method: str,
        origin: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        small: bool = False,
    ) -> UpstreamResponse:
        """Send the request and return once the node's status line and headers arrived.

        `origin` is the node's base URL (`http://host:port`), `target` the raw path and query;
        `headers` are lower-case names without hop-by-hop ones or Host.

        `small` says the caller expects a small body (task info/output), which a backend may
        then read along with the headers."""

    async def close(self) -> None: ...


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Drop hop-by-hop headers, including any the `Connection` header names."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(v.strip().lower() for v in value.split(b","))
    return [(n.lower(), v) for n, v in headers if n.lower() not in named]


def make_upstream(backend: str | None = None) -> Upstream:
    """The forwarding client named by `backend` or `$CLUSTERODM_UPSTREAM` (default h1)."""
    name = backend or os.environ.get("CLUSTERODM_UPSTREAM") or DEFAULT_BACKEND
    if name == "h1":
        from clusterodm.proxy.upstream_h1 import H1Upstream

        return H1Upstream()
    if name == "pyreqwest":
        from clusterodm.proxy.upstream_reqwest import ReqwestUpstream

        return ReqwestUpstream()
    if name == "aiohttp":
        from clusterodm.proxy.upstream_aiohttp import AiohttpUpstream

        return AiohttpUpstream()
    raise ValueError(f"unknown upstream client {name!r} (use h1, pyreqwest or aiohttp)")
