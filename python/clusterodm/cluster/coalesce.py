"""One store query for concurrent look-ups of one key.

A client polling a task no replica knows (a deleted task, a typo, a scan) can send many requests
for one uuid at once; each misses the caches the same way. Before the first answer comes back and
is remembered, the later ones wait for that answer instead of asking the database again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    """`await coalesced(key)`: `fetch(key)`, shared by the callers that ask while it runs."""

    def __init__(self, fetch: Callable[[str], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._pending: dict[str, asyncio.Future[T]] = {}

    async def __call__(self, key: str) -> T:
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)  # a waiter cancelled must not cancel the query
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await self._fetch(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: the waiters (if any) re-raise it
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._pending[key]
