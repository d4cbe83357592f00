"""Admin web app (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette

if TYPE_CHECKING:
    from clusterodm.services import Cluster


def create_admin_app(cluster: Cluster) -> Starlette:
    return Starlette()
