"""`Upstream` on aiohttp (one pooled `ClientSession`, no automatic decompression): benchmark material,
the built-in client is compared with it in `bench_proxy.py` (started through `upstreams.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

import aiohttp
import yarl

from clusterodm.proxy.upstream import CONNECT_TIMEOUT_S, Headers, UpstreamError, UpstreamGone
from upstreams import strip_hop_by_hop

CHUNK = 256 * 1024


class _Response:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Headers = strip_hop_by_hop(response.raw_headers)
        self.content_length = response.content_length

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamGone(str(exc) or exc.__class__.__name__) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamGone(str(exc) or exc.__class__.__name__) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstream:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must belong to the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
        return self._session

    async def request(
        self,
        method: str,
        origin: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | None,
        small: bool = False,
    ) -> _Response:
        try:
            response = await self._get_session().request(
                method,
                yarl.URL(origin + target, encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body,
                allow_redirects=False,
                compress=None,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            raise UpstreamGone(str(exc) or exc.__class__.__name__) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UpstreamError(str(exc) or exc.__class__.__name__) from exc
        return _Response(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
