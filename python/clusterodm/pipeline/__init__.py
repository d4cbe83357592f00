"""Task creation: uploads buffered to disk, then forwarded to the chosen node (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterodm.services import Cluster


class Pipeline:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def owns(self, uuid: str) -> bool:
        return False

    def known(self, uuid: str) -> bool:
        return False

    async def cancel(self, uuid: str) -> bool:
        return False

    async def remove(self, uuid: str) -> bool:
        return False

    def in_transit(self) -> int:
        return 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
