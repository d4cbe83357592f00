"""The autoscaler: creates a machine per task when no node has room, and destroys it afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from clusterodm.autoscale.cloudapi import resolve
from clusterodm.autoscale.config import AsrSettings, load_settings
from clusterodm.autoscale.errors import AsrConfigError, AutoscaleError
from clusterodm.autoscale.machine import MASK, Aborted, DockerMachine, mask, masked_command
from clusterodm.autoscale.s3 import make_client, probe_bucket
from clusterodm.autoscale.setup import (
    NODE_PORT,
    docker_run_command,
    login_command,
    mem_total_kb,
    setup_command,
    swap_commands,
    webhook_url,
)
from clusterodm.autoscale.vacuum import VACUUM_INTERVAL_S, to_vacuum
from clusterodm.cluster.node import DockerMachine as MachineRecord
from clusterodm.cluster.node import Node
from clusterodm.cluster.retention import keep_final_state
from clusterodm.cluster.tasks import LocalTask

if TYPE_CHECKING:
    import httpx

    from clusterodm.cluster.health import HealthPoller
    from clusterodm.cluster.nodeclient import NodeClient
    from clusterodm.cluster.nodes import NodeRegistry
    from clusterodm.cluster.routing import RouteIndex
    from clusterodm.cluster.tasks import TaskTable
    from clusterodm.config import Config
    from clusterodm.metrics import Metrics

log = logging.getLogger("clusterodm.autoscale")

Say = Callable[[str], None]
ONLINE_POLLS = 5


def short_id() -> str:
    return secrets.token_hex(4)


def find_docker_machine() -> str:
    """Path of a working `docker-machine` on PATH; AsrConfigError otherwise."""
    path = shutil.which("docker-machine")
    problem = "docker-machine was not found on PATH; install it (autoscaling creates machines with it)"
    if path is not None:
        try:
            done = subprocess.run([path, "--version"], capture_output=True, timeout=30, check=False)
            if done.returncode == 0:
                log.info("Found docker-machine executable %s", path)
                return path
            problem = f"{path} --version failed (exit {done.returncode}); check the docker-machine install"
        except (OSError, subprocess.TimeoutExpired) as e:
            problem = f"cannot run {path}: {e}"
    raise AsrConfigError([problem])


def view_command(settings: AsrSettings, images_count: int, secrets: list[str]) -> str:
    """The create command for `images_count` images, with `secrets` masked."""
    size = settings.size_for(images_count)
    if size is None:
        return f"No imageSizeMapping entry handles {images_count} images"
    args = settings.provider.create_args(settings, size, 1)
    argv = ["docker-machine", "create", *args, f"clusterodm-{images_count}-<id>"]
    return masked_command(argv, secrets)


class AsrSetup(NamedTuple):
    """What `--asr` needs, checked at start-up: the settings, docker-machine and the S3 bucket."""

    settings: AsrSettings
    machine: DockerMachine
    s3_client: Any


def check_asr(config: Config) -> AsrSetup | None:
    """None without `--asr`; AsrConfigError (one line per problem) when the setup cannot work."""
    if not config.asr:
        return None
    problems: list[str] = []
    try:
        settings = load_settings(config.asr)
    except AsrConfigError as e:
        problems += e.problems
        settings = None
    if not config.public_address:
        problems.append("--asr needs --public-address: the URL machines use to report finished tasks")
    try:
        executable = find_docker_machine()
    except AsrConfigError as e:
        problems += e.problems
    if problems or settings is None:
        raise AsrConfigError(problems)
    client = make_client(settings)
    probe_bucket(client, str(settings.get("s3.bucket")))
    log.info("Autoscaling with %s (limit %s machines)", settings.provider.name, settings.machines_limit)
    return AsrSetup(settings, DockerMachine(executable), client)


class Autoscaler:
    """Creates machines through docker-machine; see spec section 6 for the policy.

    A machine's node joins `registry` once it answers `poller`; when the machine goes, its tasks'
    final state is kept in `tasks` (asked of the node through `node_client`) and its `routes` go.
    `http` reaches the providers' cloud APIs; `public_address` is where machines send their webhook.
    """

    def __init__(
        self,
        settings: AsrSettings,
        machine: DockerMachine,
        *,
        registry: NodeRegistry,
        routes: RouteIndex,
        tasks: TaskTable,
        node_client: NodeClient,
        poller: HealthPoller,
        http: httpx.AsyncClient,
        metrics: Metrics,
        public_address: str,
        s3_client: Any = None,
        backoff_unit_s: float = 1.0,
        vacuum_interval_s: float = VACUUM_INTERVAL_S,
    ) -> None:
        self.registry = registry
        self.routes = routes
        self.tasks = tasks
        self.node_client = node_client
        self.poller = poller
        self.http = http
        self.metrics = metrics
        self.public_address = public_address
        self.settings = settings
        self.machine = machine
        self.s3_client = s3_client
        self.backoff_unit_s = backoff_unit_s
        self.vacuum_interval_s = vacuum_interval_s
        self.pending = 0
        self._retiring: set[int] = set()
        self._jobs: set[asyncio.Task[None]] = set()
        machine.secrets = settings.provider.secrets(settings)

    # -- policy --------------------------------------------------------------------------------

    def machines(self) -> list[Node]:
        return [n for n in self.registry.nodes if n.auto_spawned]

    def can_create(self, images_count: int) -> bool:
        """Within the machines limit (pending creations count), minImages and imageSizeMapping."""
        s = self.settings
        if s.machines_limit >= 0 and self.pending + len(self.machines()) >= s.machines_limit:
            return False
        if s.min_images > 0 and images_count < s.min_images:
            return False
        return s.size_for(images_count) is not None

    def view_command(self, images_count: int) -> str:
        """The create command for `images_count` images, secrets masked (ASR VIEWCMD)."""
        return view_command(self.settings, images_count, self.machine.secrets)

    # -- creation ------------------------------------------------------------------------------

    async def create_node(self, images_count: int, say: Say, abort: asyncio.Event) -> Node:
        """Create, set up and register a machine for one task; it is destroyed on any failure."""
        size = self.settings.size_for(images_count)
        if size is None or not self.can_create(images_count):
            raise AutoscaleError(f"Cannot create a machine for {images_count} images (limit or size)")
        self.pending += 1
        name = f"clusterodm-{images_count}-{short_id()}"
        node: Node | None = None
        try:
            await self._create_machine(name, size, say, abort)
            token, secret = await self._start_container(name, say, abort)
            self._check(abort)
            address = await self.machine.ip_address(name)
            s = self.settings
            now = self.registry.now()
            record = MachineRecord(name, now, s.max_runtime_s, s.max_upload_time_s, secret)
            node = await self.registry.add(address, NODE_PORT, token, docker_machine=record)
            if node is None:
                raise AutoscaleError(f"Node {address}:{NODE_PORT} is already registered")
            await self._wait_online(node, say, abort)
            say(f"Machine {name} is ready")
            self.metrics.machines_created.inc()
            return node
        except BaseException as e:
            self.metrics.machines_failed.inc()
            reason = "cancelled" if isinstance(e, Aborted | asyncio.CancelledError) else str(e)
            log.warning("Machine %s failed (%s); removing it", name, mask(reason, self.machine.secrets))
            await asyncio.shield(self._discard(name, node))
            if isinstance(e, Aborted):
                raise AutoscaleError("Task was cancelled while its machine was being created") from None
            if isinstance(e, AutoscaleError | asyncio.CancelledError):
                raise
            raise AutoscaleError(f"Machine setup failed: {mask(str(e), self.machine.secrets)}") from None
        finally:
            self.pending -= 1

    async def _create_machine(self, name: str, size: dict[str, Any], say: Say, abort: asyncio.Event) -> None:
        spec = self.settings.provider
        retries = self.settings.create_retries
        regions = self.settings.regions_count()
        last = ""
        for attempt in range(1, retries + 1):
            self._check(abort)
            resolved = await resolve(self.settings, attempt, self.http)
            region = resolved.get("region") or self.settings.pick(spec.region_key, attempt)
            say(f"Creating machine {name} ({size['slug']} in {region}), attempt {attempt}/{retries}")
            args = spec.create_args(self.settings, size, attempt, resolved)
            outcome = await self.machine.create(args, name, abort)
            if outcome.ok:
                log.info("Created machine %s (%s, %s)", name, size["slug"], region)
                return
            last = outcome.reason()
            say(f"Could not create machine {name}: {last}")
            await self.machine.remove(name)
            if attempt < retries:
                # Try the other regions quickly, then back off: a region may just be full.
                delay = 1 if attempt <= regions else 10 * (attempt - regions)
                await self._sleep(delay * self.backoff_unit_s, abort)
        raise AutoscaleError(f"Could not create a machine after {retries} attempt(s): {last}")

    async def _start_container(self, name: str, say: Say, abort: asyncio.Event) -> tuple[str, str]:
        """Swap, setup command, registry login, then NodeODM; returns (node token, webhook secret)."""
        s = self.settings
        if s.add_swap > 0:
            say("Adding swap")
            meminfo = await self._ssh(name, ["cat", "/proc/meminfo"], abort)
            mem_kb = mem_total_kb(meminfo)
            if mem_kb is None:
                raise AutoscaleError("Cannot read MemTotal from /proc/meminfo on the machine")
            for cmd in swap_commands(mem_kb, s.add_swap, s.provider.sudo):
                await self._ssh(name, cmd, abort)
        if (custom := setup_command(s)) is not None:
            say("Running nodeSetupCmd")
            await self._ssh(name, custom, abort)
        if (login := login_command(s)) is not None:
            say(f"Logging in to {login[0][-1]}")
            await self._ssh(name, login[0], abort, stdin=login[1])
        # Hex: a token starting with "-" would be read as an option by NodeODM's argument parser.
        token = secrets.token_hex(16)
        secret = secrets.token_hex(24)
        self.machine.secrets += [token, secret]
        say(f"Starting {s.get('dockerImage')}")
        hook = webhook_url(self.public_address, secret)
        await self._ssh(name, docker_run_command(s, token, hook), abort)
        return token, secret

    async def _wait_online(self, node: Node, say: Say, abort: asyncio.Event) -> None:
        say(f"Waiting for node {node.name}")
        for attempt in range(1, ONLINE_POLLS + 1):
            self._check(abort)
            if await self.poller.poll(node):
                return
            if attempt < ONLINE_POLLS:
                await self._sleep(attempt * self.backoff_unit_s, abort)
        raise AutoscaleError(f"Node {node.name} did not come online: {node.last_error}")

    async def _ssh(self, name: str, argv: list[str], abort: asyncio.Event, stdin: bytes | None = None) -> str:
        outcome = await self.machine.ssh(name, argv, stdin=stdin, abort=abort)
        if not outcome.ok:
            shown = masked_command(argv[:3], self.machine.secrets)
            raise AutoscaleError(f"'{shown} ...' failed on {name}: {outcome.reason()}")
        return outcome.stdout

    @staticmethod
    def _check(abort: asyncio.Event) -> None:
        if abort.is_set():
            raise Aborted("aborted")

    @staticmethod
    async def _sleep(seconds: float, abort: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(abort.wait(), seconds)
        if abort.is_set():
            raise Aborted("aborted")

    async def _discard(self, name: str, node: Node | None) -> None:
        if node is not None:
            await self.registry.remove(node)
        await self.machine.remove(name)

    # -- destruction ---------------------------------------------------------------------------

    async def retire(self, node: Node, reason: str) -> bool:
        """Keep the node's tasks readable in the task table, destroy the machine, forget the node."""
        dm = node.docker_machine
        if dm is None or node.id in self._retiring or self.registry.get(node.id) is not node:
            return False
        self._retiring.add(node.id)
        try:
            why = f"Machine removed: {reason}"
            await keep_final_state(self.routes, self.tasks, self.node_client, node, why)
            # Requests for its tasks go to the task table from now on, not to a dying node.
            for uuid in self.routes.for_node(node):  # the final state stays readable, with its history
                await self.routes.remove(uuid, keep_history=True)
            if not await self.machine.remove(dm.name) and await self._machine_exists(dm.name):
                return False  # the vacuum tries again
            await self.registry.remove(node)
            self.metrics.machines_destroyed.inc()
            log.info("Removed machine %s (%s)", dm.name, reason)
            return True
        finally:
            self._retiring.discard(node.id)

    async def _machine_exists(self, name: str) -> bool:
        return (await self.machine.run(["inspect", name])).ok

    async def on_commit(self, node: Node, uuid: str, info: dict[str, Any]) -> None:
        """A machine's webhook says `uuid` finished: keep its info, destroy the machine after the delay."""
        route = self.routes.peek(uuid)
        if route is None or route.node is not node:
            return
        await self.tasks.put(LocalTask(uuid, route.owner_id, dict(info, uuid=uuid), []))
        self._later(self._retire_after(node, self.settings.commit_cleanup_delay_s, "task finished"))

    async def on_task_cancelled(self, uuid: str) -> None:
        """Cancel/remove of a task running on a machine destroys that machine."""
        route = self.routes.peek(uuid)
        if route is not None and route.node.auto_spawned:
            await self.retire(route.node, f"task {uuid} was cancelled or removed")

    async def _retire_after(self, node: Node, delay_s: float, reason: str) -> None:
        await asyncio.sleep(delay_s)
        await self.retire(node, reason)

    def _later(self, coro: Any) -> None:
        job = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- background ----------------------------------------------------------------------------

    async def vacuum(self) -> None:
        """Destroy machines past maxRuntime, idle past maxUploadTime, or offline for too long."""
        for node, reason in to_vacuum(self.machines(), self.registry.now()):
            log.info("Vacuum: node %s is %s", node.name, reason)
            try:
                await self.retire(node, reason)
            except Exception:
                log.exception("Vacuum could not remove %s; will retry", node.name)

    async def start(self) -> None:
        """Vacuum now and every 10 minutes (the start-up checks ran in `check_asr`)."""
        while True:
            await self.vacuum()
            await asyncio.sleep(self.vacuum_interval_s)

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)


__all__ = ["MASK", "Autoscaler", "AutoscaleError", "find_docker_machine"]
