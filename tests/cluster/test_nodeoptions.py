"""The one `/options` cache: per node, for its time to live, forgotten by `clear()`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodeoptions import NodeOptionsCache

from .conftest import NodeProcess

DSM = [{"name": "dsm", "type": "bool", "value": "false", "domain": "bool", "help": ""}]


def test_served_from_cache_until_cleared(node_process: Callable[..., NodeProcess]) -> None:
    """A node that went away still has its list for the time to live; `clear()` asks again."""
    proc = node_process()
    node = Node(1, "127.0.0.1", proc.port)

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            cache = NodeOptionsCache(NodeClient(http, timeout_s=2))
            assert await cache.get(node) == DSM
            proc.stop()
            assert await cache.get(node) == DSM
            other = Node(2, "127.0.0.1", proc.port)  # same address, another node: its own entry
            with pytest.raises(NodeError):
                await cache.get(other)
            cache.clear()
            with pytest.raises(NodeError):
                await cache.get(node)

    asyncio.run(scenario())


def test_zero_ttl_asks_every_time(node_process: Callable[..., NodeProcess]) -> None:
    """`--debug` (time to live 0): every call reaches the node, as ClusterODM's debug mode does."""
    proc = node_process()
    node = Node(1, "127.0.0.1", proc.port)

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            cache = NodeOptionsCache(NodeClient(http, timeout_s=2), ttl_s=0.0)
            assert await cache.get(node) == DSM
            proc.stop()
            with pytest.raises(NodeError):
                await cache.get(node)

    asyncio.run(scenario())
