"""Start clusterodm with a general-purpose forwarding client in place of the built-in one.

    python bench/upstreams.py {aiohttp|pyreqwest} [clusterodm flags...]

For `bench_proxy.py` only: operators cannot select these clients (clusterodm always forwards
with `proxy/upstream_h1.py`). The clients live beside this file and need the `bench` extra
(`pip install -e '.[bench]'`). The cluster's own client is swapped right after `Cluster.open`,
before any server starts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clusterodm import main, services
from clusterodm.proxy.upstream import HOP_BY_HOP, Headers, Upstream

BACKENDS = ("aiohttp", "pyreqwest")


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Drop hop-by-hop headers, including any the `Connection` header names."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(v.strip().lower() for v in value.split(b","))
    return [(n.lower(), v) for n, v in headers if n.lower() not in named]


def make_backend(name: str) -> Upstream:
    if name == "pyreqwest":
        from upstream_reqwest import ReqwestUpstream

        return ReqwestUpstream()
    if name == "aiohttp":
        from upstream_aiohttp import AiohttpUpstream

        return AiohttpUpstream()
    raise SystemExit(f"unknown client {name!r}: use one of {', '.join(BACKENDS)}")


def run(backend: str, argv: list[str]) -> None:
    make_backend(backend)  # fail before starting when the package is missing
    open_cluster = services.Cluster.open

    async def open_with_backend(config: services.Config) -> services.Cluster:
        cluster = await open_cluster(config)
        await cluster.upstream.close()
        cluster.upstream = make_backend(backend)
        return cluster

    services.Cluster.open = open_with_backend  # type: ignore[method-assign,assignment]
    main.main(argv)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    run(sys.argv[1], sys.argv[2:])
