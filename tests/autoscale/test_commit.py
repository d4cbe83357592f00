"""The machine's webhook reaches POST /commit: task info kept, machine destroyed; forged commits refused.

The webhook app runs on a real granian server in this process; the simulator on the fake machine
calls it over loopback when its task ends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from granian.constants import Interfaces
from granian.server.embed import Server
from starlette.applications import Starlette

from autoscale.asrkit import FakeMachines
from autoscale.scene import scaled_cluster, wait_for
from clusterodm.autoscale import Autoscaler
from clusterodm.autoscale.api import routes
from clusterodm.nodeodm.status import TaskStatus
from clusterodm.services import Cluster
from support.images import make_images
from support.procs import free_port


def test_webhook_commit_keeps_info_and_removes_machine(tmp_path: Path, fake_dm: FakeMachines) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        async with scaled_cluster(tmp_path, fake_dm, public, commitCleanupDelay=0.2) as cluster:
            app = Starlette(routes=routes(cluster.registry, cluster.routes, cluster.autoscaler))
            server = Server(app, address="127.0.0.1", port=port,
                            interface=Interfaces.ASGINL, log_enabled=False)  # fmt: skip
            serving = asyncio.create_task(server.serve())
            try:
                await run(cluster, public)
            finally:
                server.stop()
                await asyncio.wait_for(serving, 5)

    async def run(c: Cluster, public: str) -> None:
        scaler = c.autoscaler
        assert isinstance(scaler, Autoscaler)
        await _wait_serving(public)
        node = await scaler.create_node(2, lambda _: None, asyncio.Event())
        dm = node.docker_machine
        assert dm is not None

        # Forged commits: no secret, a wrong one, or the right one with a bad body.
        async with httpx.AsyncClient(base_url=public) as http:
            r = await http.post("/commit", json={"uuid": "x"})
            assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
            r = await http.post("/commit", params={"secret": dm.secret[:-1] + "?"}, json={"uuid": "x"})
            assert r.status_code == 401
            r = await http.post("/commit", params={"secret": dm.secret}, content=b"not json")
            assert r.status_code == 200 and r.json() == {"error": "Malformed /commit request"}
            # A valid machine committing a task it does not hold changes nothing.
            r = await http.post("/commit", params={"secret": dm.secret}, json={"uuid": "a-b-c-d-e"})
            assert r.json() == {"ok": True}
        assert c.registry.get(node.id) is node

        # A task runs on the machine (as the pipeline would forward it) and finishes.
        files = [("images", (name, (tmp_path / name).read_bytes())) for name in make_images(tmp_path, 2)]
        reply = await c.http.post(f"{node.base_url}/task/new", params={"token": node.token}, files=files)
        uuid = reply.json()["uuid"]
        await c.routes.add(uuid, node, "user-token")
        await wait_for(lambda: uuid in c.tasks, limit_s=15, what="webhook commit")
        await wait_for(lambda: c.registry.get(node.id) is None, what="machine removed")
        assert fake_dm.machines() == {}
        assert ["rm", "-y", "-f", dm.name] in fake_dm.commands("rm")
        assert uuid not in c.routes
        info = c.tasks.info_view(uuid, with_output="0", owner_id=await c.routes.owner_id("user-token"))
        assert info is not None and info["status"]["code"] == TaskStatus.COMPLETED
        assert info["imagesCount"] == 2 and info["output"]

    asyncio.run(scenario())


async def _wait_serving(url: str) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(10):
        while True:
            try:
                await http.get(f"{url}/", timeout=0.5)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
