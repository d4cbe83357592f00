"""Routes ClusterODM answers itself: `/info`, `/options`, `/cache/clear` (spec 2.2)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.providers import Limits
from clusterodm.nodeodm.limits import limit_option_list
from clusterodm.proxy.front import reference_node
from clusterodm.proxy.responses import json_error, json_response

if TYPE_CHECKING:
    from clusterodm.services import Cluster

API_VERSION = "1.5.3"
"""The NodeODM API version ClusterODM claims (>= 1.4.0, so PyODM uses chunked uploads)."""
UNLIMITED = 99999999999
OPTIONS_TTL_S = 3600.0
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


class OptionsCache:
    """`/options` per (token, node) for an hour; keyed by node too, unlike ClusterODM (spec 8.14)."""

    def __init__(self, ttl_s: float = OPTIONS_TTL_S) -> None:
        self._ttl = ttl_s
        self._entries: dict[tuple[str, int], tuple[float, list[dict[str, Any]]]] = {}

    def get(self, token: str, node_id: int) -> list[dict[str, Any]] | None:
        entry = self._entries.get((token, node_id))
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            return None
        return entry[1]

    def put(self, token: str, node_id: int, options: list[dict[str, Any]]) -> None:
        self._entries[(token, node_id)] = (time.monotonic(), options)

    def clear(self, token: str) -> None:
        for key in [k for k in self._entries if k[0] == token]:
            del self._entries[key]


def synthesized_info(cluster: Cluster, limits: Limits) -> dict[str, Any]:
    node = reference_node(cluster)
    return {
        "version": API_VERSION,
        "taskQueueCount": 0,
        "totalMemory": UNLIMITED,
        "availableMemory": UNLIMITED,
        "cpuCores": UNLIMITED,
        "maxImages": limits.max_images,
        "maxParallelTasks": UNLIMITED if limits.max_concurrent_tasks is None else limits.max_concurrent_tasks,
        "engineVersion": (node.engine_version if node else None) or "?",
        "engine": (node.engine if node else None) or "?",
    }


def routes(cluster: Cluster) -> list[BaseRoute]:
    cache = OptionsCache()
    use_cache = not cluster.config.debug

    async def info(request: Request) -> Response:
        return json_response(synthesized_info(cluster, request.state.limits))

    async def options(request: Request) -> Response:
        token: str = request.state.token
        node = reference_node(cluster)
        if node is None:
            return json_error("Cannot compute /options, no nodes are online.")
        cached = cache.get(token, node.id) if use_cache else None
        if cached is None:
            try:
                raw = await cluster.nodes.options(node)
            except NodeError as exc:
                return json_error(f"Cannot compute /options: {exc}")
            cached = limit_option_list([o for o in raw if isinstance(o, dict)], request.state.limits)
            if use_cache:
                cache.put(token, node.id, cached)
        return json_response(cached)

    async def cache_clear(request: Request) -> Response:
        token: str = request.state.token
        cache.clear(token)
        cluster.provider.clear_cache(token)
        return json_response({"ok": True})

    return [
        Route("/info", info, methods=["GET", "HEAD"]),
        Route("/options", options, methods=["GET", "HEAD"]),
        Route("/cache/clear", cache_clear, methods=ALL_METHODS),
    ]
