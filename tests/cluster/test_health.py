"""HealthPoller and NodeClient against real node processes over loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from clusterodm._native import NodeBoard
from clusterodm.cluster.health import HealthPoller
from clusterodm.cluster.nodeclient import NodeClient, NodeError
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.store_sqlite import SqliteStore
from support.procs import free_port

UUID = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11"


async def open_registry(tmp_path: Path, online_window_ms: int = 120_000) -> NodeRegistry:
    return await NodeRegistry.open(
        await SqliteStore.open(tmp_path / "db.sqlite3"),
        NodeBoard(),
        tmp_path / "nodes.json",
        online_window_ms=online_window_ms,
    )


def test_node_goes_offline_and_back(tmp_path: Path, node_process, caplog: pytest.LogCaptureFixture) -> None:
    proc = node_process()
    caplog.set_level(logging.INFO, logger="clusterodm.health")

    async def scenario() -> None:
        registry = await open_registry(tmp_path, online_window_ms=1_000)
        node = await registry.add("127.0.0.1", proc.port)
        assert node is not None
        async with httpx.AsyncClient() as http:
            poller = HealthPoller(registry, NodeClient(http), timeout_s=5.0)
            assert await poller.poll_all() == 1
            first_good = node.last_refreshed_ms
            assert node.online(first_good) and node.info is not None and node.max_parallel_tasks == 2
            assert registry.free_slots(node) == 1  # maxParallelTasks 2 - taskQueueCount 1
            assert registry.best(1) is node

            proc.stop()
            assert await poller.poll(node) is False
            assert node.last_refreshed_ms == first_good  # a failed poll keeps the last good time
            assert node.last_error and registry.best(1) is node  # a blip: still online
            while True:  # keep polling until the window since the last good poll runs out
                assert await poller.poll(node) is False
                if not node.online(registry.now()):
                    break
                await asyncio.sleep(0.05)
            assert registry.best(1) is None and registry.reference_node() is None

            proc.start()
            assert await poller.poll(node) is True
            assert node.last_refreshed_ms > first_good and node.last_error is None
            assert registry.best(1) is node

    asyncio.run(asyncio.wait_for(scenario(), 30))
    messages = [r.getMessage() for r in caplog.records]
    assert any("went offline" in m for m in messages)
    assert sum("is online" in m for m in messages) == 2


def test_added_node_is_polled_at_once_and_run_loop(tmp_path: Path, node_process) -> None:
    proc = node_process(token="nodetok")

    async def scenario() -> None:
        registry = await open_registry(tmp_path)
        async with httpx.AsyncClient() as http:
            poller = HealthPoller(registry, NodeClient(http), interval_s=0.05, timeout_s=5.0)
            node = await registry.add("127.0.0.1", proc.port, "nodetok")
            assert node is not None
            wrong = await registry.add("localhost", proc.port, "wrong")
            assert wrong is not None
            for _ in range(500):
                if node.online(node.last_refreshed_ms) and wrong.last_error:
                    break
                await asyncio.sleep(0.01)
            assert node.info is not None and node.info["engine"] == "odm"
            assert wrong.last_error is not None and "token does not match" in wrong.last_error
            assert not wrong.online(node.last_refreshed_ms)

            runner = asyncio.create_task(poller.run())
            before = node.last_refreshed_ms
            for _ in range(500):
                if node.last_refreshed_ms > before:
                    break
                await asyncio.sleep(0.01)
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            assert node.last_refreshed_ms > before

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_concurrent_polls_of_a_node_report_it_online_once(
    tmp_path: Path, node_process, caplog: pytest.LogCaptureFixture
) -> None:
    proc = node_process()
    caplog.set_level(logging.INFO, logger="clusterodm.health")

    async def scenario() -> None:
        registry = await open_registry(tmp_path)
        async with httpx.AsyncClient() as http:
            poller = HealthPoller(registry, NodeClient(http), timeout_s=5.0)
            node = await registry.add("127.0.0.1", proc.port)  # polled at once in the background...
            assert node is not None
            assert await poller.poll_all() == 1  # ...while the first round polls it too
            await asyncio.gather(*poller._pending)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert sum("is online" in r.getMessage() for r in caplog.records) == 1


def test_node_client_token_handling(tmp_path: Path, node_process) -> None:
    open_node = node_process()
    guarded = node_process(token="nodetok")

    async def scenario() -> None:
        registry = await open_registry(tmp_path)
        untokened = await registry.add("127.0.0.1", open_node.port)
        tokened = await registry.add("127.0.0.1", guarded.port, "nodetok")
        assert untokened is not None and tokened is not None
        async with httpx.AsyncClient() as http:
            client = NodeClient(http)
            # No token configured for the node: no token parameter at all goes over the wire.
            info = await client.task_info(untokened, UUID, with_output=-3)
            assert info["query"] == {"with_output": ["-3"]}
            info = await client.task_info(tokened, UUID)
            assert info["query"] == {"token": ["nodetok"]}
            assert await client.task_list(tokened) == [{"uuid": "00000000-0000-4000-8000-000000000001"}]
            assert (await client.options(untokened))[0]["name"] == "dsm"
            tokened.token = "bad"
            with pytest.raises(
                NodeError, match=rf"127.0.0.1:{guarded.port}: GET /info: Invalid authentication"
            ):
                await client.info(tokened)
            with pytest.raises(NodeError, match="HTTP 404"):
                await client.task_output(untokened, UUID)
            open_node.stop()
            with pytest.raises(
                NodeError, match=rf"127.0.0.1:{open_node.port}: GET /info failed: ConnectError"
            ):
                await client.info(untokened)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_simulated_nodeodm_offline_and_back(tmp_path: Path) -> None:
    """The same cycle against the NodeODM simulator, with a node token."""
    from support.simnode import SimNode

    with SimNode(tmp_path, "--token", "simtok", "--parallel-tasks", "3") as sim:

        async def scenario() -> None:
            registry = await open_registry(tmp_path)
            node = await registry.add(sim.host, sim.port, "simtok")
            assert node is not None
            async with httpx.AsyncClient() as http:
                poller = HealthPoller(registry, NodeClient(http), timeout_s=5.0)
                assert await poller.poll(node)
                assert node.max_parallel_tasks == 3 and registry.free_slots(node) == 3
                good = node.last_refreshed_ms
                sim.stop()
                assert not await poller.poll(node)
                # A blip keeps the node (ClusterODM would drop it at once), the last good poll stays.
                assert node.last_refreshed_ms == good and registry.reference_node() is node
                assert registry.now() - good < node.online_window_ms
                sim.start()
                assert await poller.poll(node) and registry.reference_node() is node
                assert registry.choose(1) is node and registry.turn(node) == 1

        asyncio.run(asyncio.wait_for(scenario(), 30))


def test_unreachable_node_is_retried_with_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries at 2 s, 4 s, 8 s... (scaled down here) until the wait reaches the poll interval."""
    from clusterodm.cluster import health

    monkeypatch.setattr(health, "RETRY_FIRST_S", 0.1)
    port = free_port()
    polled: list[float] = []

    async def scenario() -> None:
        registry = await open_registry(tmp_path)
        node = await registry.add("127.0.0.1", port)
        assert node is not None
        async with httpx.AsyncClient() as http:
            poller = HealthPoller(registry, NodeClient(http), interval_s=1.0, timeout_s=1.0)
            real_poll = poller.poll

            four = asyncio.Event()

            async def counting_poll(n: object) -> bool:
                polled.append(asyncio.get_running_loop().time())
                if len(polled) == 4:
                    four.set()
                return await real_poll(n)  # type: ignore[arg-type]

            poller.poll = counting_poll  # type: ignore[method-assign]
            runner = asyncio.create_task(poller.run())
            try:
                await asyncio.wait_for(four.wait(), 5)  # the round, then retries after 0.1, 0.2, 0.4 s
                gaps = [b - a for a, b in zip(polled, polled[1:], strict=False)]
                assert gaps == pytest.approx([0.1, 0.2, 0.4], abs=0.08), gaps
                await asyncio.sleep(0.6)  # 0.8 s would reach the 1 s interval: no more retries
                assert len(polled) == 5  # ...only the next round, 1 s after the first
                assert polled[4] - polled[0] == pytest.approx(1.0, abs=0.15)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_cluster_started_before_its_node_has_it_online_within_seconds(tmp_path: Path) -> None:
    """nodes.json names a node that is not up yet; with the default 60 s poll interval, the node
    is online a few seconds after it starts (retries at 2, 4, 8 s), not a minute later."""
    import time

    from support.clusterodm import ClusterODM
    from support.simnode import SimNode

    sim = SimNode(tmp_path)  # its port is chosen, nothing listens there yet
    with ClusterODM(tmp_path, nodes=[sim], poll_interval=60) as cluster:
        deadline = time.monotonic() + 10
        while "is not reachable" not in cluster.log():
            assert time.monotonic() < deadline, cluster.log()
            time.sleep(0.05)
        with sim.start():
            up = time.monotonic()
            cluster.wait_online(1, timeout=10)
            assert time.monotonic() - up < 6, cluster.log()
