"""POST /commit: the nodes' webhook (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from clusterodm.services import Cluster


def routes(cluster: Cluster) -> list[BaseRoute]:
    return []
