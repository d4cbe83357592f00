"""`Upstream` on pyreqwest (Rust reqwest/hyper): benchmark material, the built-in client is compared
with it in `bench_proxy.py` (started through `upstreams.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, PyreqwestError, ReadError, RequestTimeoutError, WriteError

from clusterodm.proxy.upstream import CONNECT_TIMEOUT_S, Headers, UpstreamError, UpstreamGone
from upstreams import strip_hop_by_hop

_GONE = (ConnectError, ReadError, WriteError)


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, _GONE):
        return UpstreamGone(str(exc))
    if isinstance(exc, RequestTimeoutError):
        return UpstreamError(f"timeout: {exc}")
    return UpstreamError(str(exc))


class _Response:
    def __init__(self, stream_request: Any, response: Any) -> None:
        self._stream_request = stream_request
        self._response = response
        self._closed = False
        self.status: int = response.status
        self.headers: Headers = strip_hop_by_hop(
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        )
        length = response.get_header("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    async def read(self) -> bytes:
        try:
            return bytes(await self._response.bytes())
        except PyreqwestError as exc:
            raise _classify(exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._response.body_reader
        try:
            while (chunk := await reader.read_chunk()) is not None:
                yield bytes(chunk)
        except PyreqwestError as exc:
            raise _classify(exc) from exc

    async def aclose(self) -> None:
        if not self._closed and self._stream_request is not None:
            self._closed = True
            # Dropping an unfinished body makes hyper close the connection instead of reusing it.
            await self._stream_request.__aexit__(None, None, None)


class ReqwestUpstream:
    def __init__(self) -> None:
        self._client: Client | None = None

    def _get_client(self) -> Client:
        if self._client is None:  # built lazily inside the running loop
            self._client = (
                ClientBuilder()
                .connect_timeout(timedelta(seconds=CONNECT_TIMEOUT_S))
                .pool_idle_timeout(timedelta(seconds=30))
                .pool_max_idle_per_host(256)
                .follow_redirects(False)
                .gzip(False)
                .brotli(False)
                .zstd(False)
                .deflate(False)
                .no_proxy()
                .http1_only()
                .tcp_nodelay(True)
                .build()
            )
        return self._client

    async def request(
        self,
        method: str,
        origin: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        small: bool = False,
    ) -> _Response:
        text_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        builder = self._get_client().request(method, origin + target).headers(text_headers)
        if body is not None:
            builder = builder.body_stream(body)
        try:
            if small and body is None:  # one round trip into Rust: the body arrives with the headers
                return _Response(None, await builder.build().send())
            stream_request = builder.build_streamed()
            response = await stream_request.__aenter__()
        except PyreqwestError as exc:
            raise _classify(exc) from exc
        return _Response(stream_request, response)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
