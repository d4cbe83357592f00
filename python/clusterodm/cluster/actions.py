"""Task actions shared by the proxy routes and the admin CLI/web (stub: the proxy helper fills it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterodm.services import Cluster


class TaskActions:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def info(self, uuid: str, token: str | None, with_output: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    async def output(
        self, uuid: str, token: str | None, line: str | None = None
    ) -> list[str] | dict[str, Any]:
        raise NotImplementedError

    async def cancel(self, uuid: str, token: str | None) -> dict[str, Any]:
        raise NotImplementedError

    async def remove(self, uuid: str, token: str | None) -> dict[str, Any]:
        raise NotImplementedError

    async def restart(self, uuid: str, token: str | None, options: str | list[Any] | None) -> dict[str, Any]:
        raise NotImplementedError

    async def list(self, token: str | None) -> list[dict[str, Any]]:
        raise NotImplementedError
