"""Routes ClusterODM answers itself: `/info`, `/options`, `/cache/clear` (spec 2.2)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clusterodm.cluster.nodeclient import NodeError
from clusterodm.cluster.providers import Limits
from clusterodm.nodeodm.limits import limit_option_list
from clusterodm.notices import NO_NODE_REPEAT_S, Throttle, no_node_notice
from clusterodm.proxy.responses import json_error, json_response

if TYPE_CHECKING:
    from clusterodm.cluster.nodeoptions import NodeOptionsCache
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.providers import Provider
    from clusterodm.config import Config

API_VERSION = "1.5.3"
"""The NodeODM API version ClusterODM claims (>= 1.4.0, so PyODM uses chunked uploads)."""
UNLIMITED = 99999999999
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

log = logging.getLogger("clusterodm.proxy")


def synthesized_info(registry: NodeRegistry, limits: Limits) -> dict[str, Any]:
    node = registry.reference_node()
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


def routes(
    registry: NodeRegistry, node_options: NodeOptionsCache, provider: Provider, config: Config
) -> list[BaseRoute]:
    """`/info` and `/options` speak for the reference node of `registry` (its options from
    `node_options`); `/cache/clear` empties that cache and the token's in `provider`. `config`
    says, in the empty cluster's notice, how to add a node."""
    empty_cluster_notice = Throttle(NO_NODE_REPEAT_S)

    async def info(request: Request) -> Response:
        # A client (WebODM adding this "node", PyODM) asks an empty cluster: the operator who is
        # trying it out reads the log, so say there why nothing will run, and what to do.
        if not len(registry) and empty_cluster_notice.ready():
            log.warning("GET /info: %s", no_node_notice(config))
        return json_response(synthesized_info(registry, request.state.limits))

    async def options(request: Request) -> Response:
        """The reference node's list as this token sees it (spec 2.2)."""
        node = registry.reference_node()
        if node is None:
            return json_error("Cannot compute /options, no nodes are online.")
        try:
            options_list = await node_options.get(node)
        except NodeError as exc:
            return json_error(f"Cannot compute /options: {exc}")
        return json_response(limit_option_list(options_list, request.state.limits))

    async def cache_clear(request: Request) -> Response:
        """ClusterODM cleared this token's `/options`; the cache is per node here, so all of it goes."""
        token: str = request.state.token
        node_options.clear()
        provider.clear_cache(token)
        return json_response({"ok": True})

    return [
        Route("/info", info, methods=["GET", "HEAD"]),
        Route("/options", options, methods=["GET", "HEAD"]),
        Route("/cache/clear", cache_clear, methods=ALL_METHODS),
    ]
