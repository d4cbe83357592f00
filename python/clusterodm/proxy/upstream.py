"""The forwarding HTTP client behind one small interface: what the proxy's hot path needs from it.

Client traffic forwarded to nodes (routed task requests: info, output, downloads; the web UI
files) goes through here; control-plane calls use `Cluster.http` (httpx). The implementation is
the built-in client of `upstream_h1`; `bench/bench_proxy.py` compares it with general-purpose
clients behind the same interface (`bench/upstreams/`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from clusterodm.config import env_number

Headers = list[tuple[bytes, bytes]]

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


class UpstreamTimeout(UpstreamError):
    """The node did not answer, or stopped sending, within its time limit."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a node may take before the client gets an error instead of waiting forever.

    `answer_s` bounds everything up to the response head, and the whole body of a small answer
    (task info/output), well inside PyODM's 30 s request timeout, so the client reads which node
    failed instead of its own timeout. `idle_s` bounds each pause of a streamed body (downloads),
    which may take as long as it needs while bytes keep coming. `from_env` reads
    `CLUSTERODM_NODE_ANSWER_TIMEOUT_S` and `CLUSTERODM_NODE_IDLE_TIMEOUT_S` (tests shorten them)."""

    connect_s: float = CONNECT_TIMEOUT_S
    answer_s: float = 15.0
    idle_s: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Timeouts:
        default = cls()
        return cls(
            default.connect_s,
            env_number(environ, "CLUSTERODM_NODE_ANSWER_TIMEOUT_S", default.answer_s),
            env_number(environ, "CLUSTERODM_NODE_IDLE_TIMEOUT_S", default.idle_s),
        )


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

        `origin` is the node's base URL (`http://host:port`), `target` the path and query to
        send, already encoded; `headers` are lower-case names without hop-by-hop ones or Host.
        Failures raise `UpstreamGone` (refused or reset) or `UpstreamError`, `UpstreamTimeout`
        included; so do `read()` and `chunks()` when the body fails or stalls.

        `small` says the caller expects a small body (task info/output), read whole with
        `read()`: the answer's time limit then covers the body too."""

    async def close(self) -> None:
        """Close the pooled connections (at shutdown)."""
