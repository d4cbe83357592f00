"""Clearing what failed attempts left on a node, against a real simulator (NodeODM's upload rules)."""

from __future__ import annotations

import asyncio
import uuid as uuid_lib
from pathlib import Path

import httpx

from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient
from clusterodm.pipeline.leftovers import Leftovers
from support.simnode import SimNode


def sim_node(sim: SimNode) -> Node:
    return Node(id=1, hostname=sim.host, port=sim.port)


def listed(sim: SimNode) -> list[str]:
    return [t["uuid"] for t in httpx.get(f"{sim.url}/task/list").json()]


def test_clears_uploads_committed_tasks_and_clean_nodes(tmp_path: Path) -> None:
    with SimNode(tmp_path, "--processing-seconds", "5") as sim:
        node = sim_node(sim)
        dirty, committed, clean = (str(uuid_lib.uuid4()) for _ in range(3))
        for uuid in (dirty, committed):
            assert httpx.post(f"{sim.url}/task/new/init", headers={"set-uuid": uuid}).json() == {"uuid": uuid}
            reply = httpx.post(f"{sim.url}/task/new/upload/{uuid}", files={"images": ("a.jpg", b"cut")})
            assert reply.json() == {"success": True}
        assert httpx.post(f"{sim.url}/task/new/commit/{committed}").json() == {"uuid": committed}

        async def clear_all() -> None:
            async with httpx.AsyncClient() as http:
                leftovers = Leftovers(NodeClient(http))
                leftovers.touched(node, dirty)  # an upload went there and was never committed
                leftovers.suspect(committed)  # resumed after a restart: anything may be there
                leftovers.suspect(clean)
                for uuid in (dirty, committed, clean):
                    assert leftovers.holds(node, uuid)
                    await leftovers.clear(node, uuid)
                    assert not leftovers.holds(node, uuid)

        asyncio.run(clear_all())
        assert listed(sim) == []
        assert not any((sim.data_dir / "tmp").iterdir())
        # Each uuid can now start afresh on the node, with nothing of before in it.
        for uuid in (dirty, committed, clean):
            assert httpx.post(f"{sim.url}/task/new/init", headers={"set-uuid": uuid}).json() == {"uuid": uuid}
            assert sorted(p.name for p in (sim.data_dir / "tmp" / uuid).iterdir()) == ["body.json"]
