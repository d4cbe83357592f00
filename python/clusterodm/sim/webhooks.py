"""Webhook delivery on task completion, with NodeODM's retry policy (wait attempt x 5 s, 5 retries)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx

log = logging.getLogger("clusterodm.sim.webhooks")
MAX_RETRIES = 5


class WebhookSender:
    """Posts task info to webhook URLs in the background; owns its HTTP client and pending deliveries."""

    def __init__(self, retry_seconds: float = 5.0) -> None:
        self.retry_seconds = retry_seconds
        self._client = httpx.AsyncClient(timeout=30.0)
        self._pending: set[asyncio.Task[None]] = set()

    def send(self, urls: Sequence[str], payload: dict[str, Any]) -> None:
        for url in urls:
            delivery = asyncio.create_task(self._deliver(url, payload))
            self._pending.add(delivery)
            delivery.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = await self._client.post(url, json=payload)
                if response.status_code == 200:
                    log.info("webhook %s delivered for task %s", url, payload.get("uuid"))
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if attempt == MAX_RETRIES:
                log.warning("webhook %s failed for good (%s); check that the receiver is up", url, problem)
                return
            log.info("webhook %s failed (%s), retry %d", url, problem, attempt + 1)
            await asyncio.sleep((attempt + 1) * self.retry_seconds)

    async def aclose(self) -> None:
        for delivery in list(self._pending):
            delivery.cancel()
        await self._client.aclose()
