"""The options a task is forwarded with: the token's limits, split-merge, then the node's own validation."""

from __future__ import annotations

import time
from typing import Any

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient
from clusterodm.cluster.providers import Limits
from clusterodm.nodeodm.limits import augment_user_options, limit_option_list
from clusterodm.nodeodm.options import OptionsError, parse_supplied, validate_options

OPTIONS_TTL_S = 600.0
SM_CLUSTER = "sm-cluster"


class NodeOptionsCache:
    """Each node's `/options`, cached per node (never per token: spec 8.14) for a few minutes."""

    def __init__(self, nodes: NodeClient, ttl_s: float = OPTIONS_TTL_S) -> None:
        self._nodes = nodes
        self._ttl = ttl_s
        self._cache: dict[int, tuple[float, list[dict[str, Any]]]] = {}

    async def get(self, node: Node) -> list[dict[str, Any]]:
        """Raises `NodeError` when the node cannot list its options."""
        hit = self._cache.get(node.id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        options = [o for o in await self._nodes.options(node) if isinstance(o, dict) and "name" in o]
        self._cache[node.id] = (now, options)
        return options


def split_merge(
    options: list[dict[str, Any]], enabled: bool, cluster_url: str, token: str
) -> list[dict[str, Any]]:
    """Point split tasks' `sm-cluster` at this proxy (with the user's token), or strip it when disabled."""
    rest = [o for o in options if o.get("name") != SM_CLUSTER]
    if not enabled:
        return rest
    if not any(o.get("name") == "split" for o in options):
        return options
    url = cluster_url.rstrip("/") + "/"
    if token:
        url += f"?token={token}"
    return [*rest, {"name": SM_CLUSTER, "value": url}]


def prepare_options(
    node_options: list[dict[str, Any]],
    supplied: Any,
    limits: Limits,
    *,
    splitmerge: bool,
    cluster_url: str,
    token: str,
) -> list[dict[str, Any]] | OptionsError:
    """User options -> limits (assure/between/value) -> split-merge -> validated against the node's list
    as this token sees it. The result is what the node receives."""
    parsed = parse_supplied(supplied)
    if isinstance(parsed, OptionsError):
        return parsed
    augmented = augment_user_options(parsed, limits)
    with_sm = split_merge(augmented, splitmerge, cluster_url, token)
    result = validate_options(limit_option_list(node_options, limits), with_sm)
    return result if isinstance(result, OptionsError) else result.options
