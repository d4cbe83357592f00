"""Telnet admin CLI (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterodm.services import Cluster


async def serve_cli(cluster: Cluster) -> None:
    return None
