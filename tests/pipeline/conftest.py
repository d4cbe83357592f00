"""Three simulator nodes and a clusterodm in front of them, all real processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.clusterodm import ClusterODM
from support.simnode import SimNode

FAST = ("--processing-seconds", "0.3", "--asset-size", "2048")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., tuple[list[SimNode], ClusterODM]]]:
    """`stack(*cluster_flags, node_flags=[...] per node, env={...})` starts nodes + clusterodm, stopped
    at the end."""
    with ExitStack() as exit_stack:

        def start(
            *flags: str,
            node_flags: list[tuple[str, ...]] | None = None,
            env: dict[str, str] | None = None,
        ) -> tuple[list[SimNode], ClusterODM]:
            nodes = []
            for i, extra in enumerate(node_flags or [(), (), ()]):
                nodes.append(exit_stack.enter_context(SimNode(tmp_path, *FAST, *extra, name=f"sim{i}")))
            cluster = ClusterODM(tmp_path, *flags, nodes=nodes, env=env)
            exit_stack.callback(cluster.stop)
            cluster.start(wait_nodes=len(nodes))
            return nodes, cluster

        yield start
