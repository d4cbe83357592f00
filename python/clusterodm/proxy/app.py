"""Starlette app speaking the NodeODM API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clusterodm.proxy.responses import json_response

if TYPE_CHECKING:
    from clusterodm.services import Cluster

API_VERSION = "1.5.3"
UNLIMITED = 99999999999


def create_app(cluster: Cluster) -> Starlette:
    async def info(request: Request) -> Response:
        return json_response(
            {
                "version": API_VERSION,
                "taskQueueCount": 0,
                "totalMemory": UNLIMITED,
                "availableMemory": UNLIMITED,
                "cpuCores": UNLIMITED,
                "maxImages": None,
                "maxParallelTasks": UNLIMITED,
                "engineVersion": "?",
                "engine": "?",
            }
        )

    async def auth_info(request: Request) -> Response:
        return json_response(cluster.provider.auth_info())

    return Starlette(routes=[Route("/info", info), Route("/auth/info", auth_info)])
