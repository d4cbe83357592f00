"""The objects every part of clusterodm shares, created once in `main` and handed to each app."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from clusterodm._native import NodeBoard, RouteTable
from clusterodm.admin.history import DEFAULT_INTERVAL_S, History
from clusterodm.autoscale import Autoscaler
from clusterodm.autoscale.s3 import S3Downloads
from clusterodm.autoscale.scaler import check_asr
from clusterodm.cluster.actions import TaskActions
from clusterodm.cluster.activity import ActivityCheck
from clusterodm.cluster.health import HealthPoller
from clusterodm.cluster.maintenance import Maintenance
from clusterodm.cluster.node import Node
from clusterodm.cluster.nodeclient import NodeClient
from clusterodm.cluster.nodeoptions import OPTIONS_TTL_S, NodeOptionsCache
from clusterodm.cluster.nodes import NodeRegistry
from clusterodm.cluster.providers import Provider, make_provider
from clusterodm.cluster.replicas import Replica
from clusterodm.cluster.retention import keep_final_state, live_routes
from clusterodm.cluster.routing import RouteIndex
from clusterodm.cluster.sharing import SharedState, publish_polls
from clusterodm.cluster.slots import Slots
from clusterodm.cluster.store import Store, open_store
from clusterodm.cluster.tasks import TaskTable
from clusterodm.cluster.uploads import UploadOwners
from clusterodm.config import Config, ConfigError, env_number
from clusterodm.metrics import Metrics
from clusterodm.pipeline import Pipeline
from clusterodm.proxy.handoff import UploadHandoff
from clusterodm.proxy.upstream import Timeouts, Upstream
from clusterodm.proxy.upstream_h1 import H1Upstream

if TYPE_CHECKING:
    from clusterodm.proxy.front import ASGIApp, ProxyFront

log = logging.getLogger("clusterodm")

Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(eq=False)
class Cluster:
    config: Config
    store: Store
    registry: NodeRegistry
    routes: RouteIndex
    tasks: TaskTable
    http: httpx.AsyncClient
    node_client: NodeClient
    poller: HealthPoller
    maintenance: Maintenance
    provider: Provider
    upstream: Upstream
    """The client that forwards API requests to nodes (pooled keep-alive connections)."""
    replica: Replica
    """This process among the replicas sharing the store; the leader runs the cluster-wide jobs."""
    slots: Slots = field(init=False)
    """Free node slots, claimed cluster-wide by each forward."""
    metrics: Metrics = field(default_factory=Metrics)
    node_options: NodeOptionsCache = field(init=False)
    """Each node's `/options` (`--debug` turns the cache off, as in ClusterODM)."""
    actions: TaskActions = field(init=False)
    pipeline: Pipeline = field(init=False)
    history: History = field(init=False)
    """The last hour in numbers, for the admin web's charts."""
    upload_owners: UploadOwners | None = None
    """Which replica holds which upload session (replicas sharing a store only)."""
    handoff: UploadHandoff | None = None
    """Sends uploads and commits of sessions other replicas hold to them (shared store only)."""
    autoscaler: Autoscaler | None = None
    s3: S3Downloads | None = None
    streams: set[asyncio.Task[Any]] = field(default_factory=set)
    """Requests streaming a long response (downloads): ended at shutdown instead of waited for."""

    @classmethod
    async def open(cls, config: Config) -> Cluster:
        """Load state from `--data-dir` (SQLite store, nodes.json, ClusterODM's routes.json)."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            provider = make_provider(config.cloud_provider, config.token, config.limits)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        store = await open_store(config.db, config.data_dir)
        # A node is online while one of its last two polls succeeded: 2 minutes with the
        # default 60 s interval, as in ClusterODM, without its one-blip-and-you-are-out rule.
        window_ms = int(2 * config.poll_interval * 1000)
        try:
            registry = await NodeRegistry.open(
                store, NodeBoard(), config.data_dir / "nodes.json", online_window_ms=window_ms
            )
            routes = await RouteIndex.open(store, RouteTable(), registry)
            imported = await routes.import_clusterodm_routes(config.data_dir / "routes.json")
            if imported:
                log.info("Imported %d routes from ClusterODM's routes.json", imported)
            tasks = await TaskTable.open(store, timeline=routes.timeline)
        except BaseException:
            await store.close()
            raise
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        node_client = NodeClient(http)
        cluster = cls(
            config=config,
            store=store,
            registry=registry,
            routes=routes,
            tasks=tasks,
            http=http,
            node_client=node_client,
            poller=HealthPoller(registry, node_client, interval_s=config.poll_interval),
            maintenance=Maintenance(routes, tasks),
            provider=provider,
            upstream=H1Upstream(Timeouts.from_env(os.environ)),
            replica=Replica(store, config.replica_url, address_given=bool(config.replica_address)),
            metrics=Metrics(enabled=config.metrics),
        )
        if store.shared:
            cluster.upload_owners = UploadOwners(store, cluster.replica.id, tasks)
        cluster.slots = Slots(registry, store, cluster.replica.id)
        cluster.poller.slots = cluster.slots
        cluster.maintenance.set_live_check(lambda uuids: live_routes(routes, registry, node_client, uuids))
        cluster.node_options = NodeOptionsCache(node_client, ttl_s=0.0 if config.debug else OPTIONS_TTL_S)
        asr = check_asr(config)
        if asr is not None:
            cluster.autoscaler = Autoscaler(
                asr.settings,
                asr.machine,
                registry=registry,
                routes=routes,
                tasks=tasks,
                node_client=node_client,
                poller=cluster.poller,
                http=http,
                metrics=cluster.metrics,
                public_address=config.public_address,
                s3_client=asr.s3_client,
            )
        cluster.pipeline = Pipeline(
            config,
            registry=registry,
            routes=routes,
            tasks=tasks,
            slots=cluster.slots,
            store=store,
            replica=cluster.replica,
            poller=cluster.poller,
            node_client=node_client,
            node_options=cluster.node_options,
            provider=provider,
            metrics=cluster.metrics,
            autoscaler=cluster.autoscaler,
            upload_owners=cluster.upload_owners,
        )
        if cluster.upload_owners is not None:
            cluster.handoff = UploadHandoff(cluster.upload_owners, cluster.pipeline.sessions.__contains__)
        cluster.actions = TaskActions(
            routes=routes,
            tasks=tasks,
            uploads=cluster.pipeline,
            node_client=node_client,
            node_options=cluster.node_options,
            http=http,
            provider=provider,
            enforce_owner=bool(config.token or config.limits) or config.cloud_provider != "local",
            cancel_listener=lambda: cluster.autoscaler,
        )
        cluster.history = History(
            registry,
            routes,
            tasks,
            lambda: cluster.pipeline.bytes_received,
            interval_s=env_number(os.environ, "CLUSTERODM_HISTORY_INTERVAL_S", DEFAULT_INTERVAL_S),
        )
        cluster.s3 = S3Downloads.from_config(config.downloads_from_s3, cluster.autoscaler)
        cluster.metrics.watch(registry, cluster.pipeline, store, cluster.replica)
        log.info("Loaded %d nodes, %d routes, %d local tasks", len(registry), len(routes), len(tasks))
        return cluster

    async def remove_node(self, node: Node, reason: str) -> bool:
        """Remove a node for an operator; an auto-spawned one also gets its machine destroyed."""
        self.routes.ensure_writable()  # before anything: a machine destroyed, its node still listed
        if node.auto_spawned and self.autoscaler is not None:
            return await self.autoscaler.retire(node, reason)
        why = f"Node {node.name} was removed from the cluster ({reason})"
        await keep_final_state(self.routes, self.tasks, self.node_client, node, why)
        dropped = await self.registry.remove(node)
        log.info("Removed node %s (%s) and %d route(s)", node.name, reason, len(dropped))
        return True

    def proxy_app(self) -> ProxyFront:
        """The NodeODM API: the front, the webhook before the token check, the routes after it."""
        from clusterodm.autoscale import api as autoscale_api
        from clusterodm.pipeline import api as pipeline_api
        from clusterodm.proxy import routes_node, routes_tasks
        from clusterodm.proxy.app import api_app, public_app

        webhook = autoscale_api.routes(self.registry, self.routes, self.autoscaler)
        api = [
            *routes_node.routes(self.registry, self.node_options, self.provider, self.config),
            *routes_tasks.routes(self.actions, self.handoff),
            *pipeline_api.routes(self.pipeline, self.store),
        ]
        return self.proxy_front(public_app(webhook), api_app(api))

    def proxy_front(self, public_app: ASGIApp, app: ASGIApp) -> ProxyFront:
        """`ProxyFront` over this cluster's parts, `public_app` and `app` behind it (tests put
        their own there)."""
        from clusterodm.proxy.front import ProxyFront
        from clusterodm.proxy.probes import Probes
        from clusterodm.proxy.taskroute import TaskRoute

        tasks = TaskRoute(
            self.actions,
            self.routes,
            self.upstream,
            s3=self.s3,
            handoff=self.handoff,
            streams=self.streams,
            metrics=self.metrics,
        )
        return ProxyFront(
            public_app,
            app,
            upstream=self.upstream,
            tasks=tasks,
            probes=Probes(self.store, self.replica),
            provider=self.provider,
            registry=self.registry,
            handoff=self.handoff,
            streams=self.streams,
            metrics=self.metrics,
            metrics_public=self.config.metrics_public,
        )

    def http_servers(self, make: Callable[..., Any]) -> list[Any]:
        """The proxy (HTTP and/or HTTPS) and the admin web, as embedded granian servers."""
        from clusterodm.admin.web import AdminApi, create_admin_app

        cfg = self.config
        proxy = self.proxy_app()
        servers = []
        if cfg.ssl and cfg.secure_port:
            servers.append(make(proxy, cfg.bind, cfg.port, cfg))
            servers.append(make(proxy, cfg.bind, cfg.secure_port, cfg, tls=True))
            log.info(
                "NodeODM API on http://%s:%d and https://%s:%d", cfg.bind, cfg.port, cfg.bind, cfg.secure_port
            )
        else:
            servers.append(make(proxy, cfg.bind, cfg.port, cfg, tls=cfg.ssl))
            log.info("NodeODM API on %s://%s:%d", "https" if cfg.ssl else "http", cfg.bind, cfg.port)
        if cfg.admin_web_port:
            api = AdminApi(
                registry=self.registry,
                remove_node=self.remove_node,
                routes=self.routes,
                tasks=self.tasks,
                node_client=self.node_client,
                store=self.store,
                replica=self.replica,
                history=self.history,
                cli_port=cfg.admin_cli_port,
                nodes_file=cfg.data_dir / "nodes.json",
            )
            admin = create_admin_app(api, self.metrics, cfg.admin_pass)
            servers.append(make(admin, cfg.admin_address, cfg.admin_web_port, cfg))
            log.info("Admin web on http://%s:%d", cfg.admin_address, cfg.admin_web_port)
        if (cfg.admin_web_port or cfg.admin_cli_port) and not cfg.admin_pass:
            log.warning(
                "No --admin-pass: the admin CLI and web listen on %s only. To reach them from other "
                "hosts, set --admin-pass (they then listen on all interfaces, or on --admin-bind).",
                cfg.admin_address,
            )
        return servers

    def background_jobs(self) -> list[Job]:
        """Long-running coroutines started next to the servers and cancelled at shutdown."""
        from clusterodm.admin.commands import Commands
        from clusterodm.admin.telnet import serve_cli

        check = ActivityCheck(self.routes, self.node_client, self.config.poll_interval)
        # Once per cluster, on the leader (started and stopped as leadership comes and goes).
        self.replica.add_leader_job(self.poller.run)
        self.replica.add_leader_job(self.maintenance.run_prunes)
        if self.autoscaler is not None:
            self.replica.add_leader_job(self.autoscaler.start)
        if self.upload_owners is not None:
            self.replica.add_leader_job(self.upload_owners.run_cleanup)
        # On every replica: its own batched writes, uploads on its disk, its admin ports.
        jobs: list[Job] = [self.replica.run, self.maintenance.run_flushes, self.pipeline.start, check.run]
        if self.store.shared:  # other replicas' node and route changes (and polls), applied here
            shared = SharedState(self.registry, self.routes, self.slots)
            jobs.append(lambda: self.store.listen(shared))
            publish_polls(self.poller, self.store)
            jobs.append(self._first_poll)
        if self.config.admin_cli_port:
            commands = Commands(
                registry=self.registry,
                remove_node=self.remove_node,
                poller=self.poller,
                routes=self.routes,
                tasks=self.tasks,
                actions=self.actions,
                store=self.store,
                replica=self.replica,
                autoscaler=self.autoscaler,
            )
            jobs.append(lambda: serve_cli(commands, self.config))
        if self.config.admin_web_port:
            jobs.append(self.history.run)
        return jobs

    async def _first_poll(self) -> None:
        """One round of polls at the start, so a replica that does not lead knows its nodes at once
        (then it hears the leader's polls)."""
        await self.poller.poll_all()

    def stop_streams(self) -> None:
        """Shutdown: end the long downloads in flight, so the servers can stop at once."""
        if self.streams:
            log.info("Ending %d download(s) in progress for the shutdown", len(self.streams))
        for task in list(self.streams):
            task.cancel()

    async def close(self) -> None:
        """Save state and close the clients; called once at shutdown, after the servers stopped
        (the embedded servers run no ASGI lifespan, so this is where the connections close)."""
        closers = (
            self.replica.close,
            self.pipeline.close,
            getattr(self.autoscaler, "close", None),
            getattr(self.upload_owners, "close", None),
            getattr(self.handoff, "close", None),
        )
        for closer in closers:
            if closer is not None:
                try:
                    await asyncio.wait_for(closer(), 2.0)
                except Exception:
                    log.exception("shutdown step failed")
        for step in (self.routes.close, self.tasks.close):
            try:
                await step()
            except Exception:
                log.exception("saving state at shutdown failed")
        self.registry.save()
        await self.store.close()
        await self.upstream.close()
        await self.http.aclose()
