"""`clusterodm` entry point: one event loop hosting the proxy, the admin ports and the pollers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

from clusterodm.cluster.store import StoreError
from clusterodm.config import Config, ConfigError, config_or_exit, fail
from clusterodm.exclusive import ExclusiveServer
from clusterodm.logs import setup_logging
from clusterodm.notices import no_node_notice

if TYPE_CHECKING:
    from clusterodm.services import Cluster, Job

log = logging.getLogger("clusterodm")

SHUTDOWN_GRACE_S = 3.0
READ_BUFFER_BYTES = 1 << 20
"""Largest read of a request body (granian's default is 408 KB). Uploads arrive in fewer, bigger
pieces: ~0.2 CPU s less per GB received, for ~1.5 MB more memory per upload request in flight;
2 MB saved little more CPU for twice the memory (bench/README.md, Upload)."""
LEFTOVER_GRACE_S = 0.5


def http_server(app: Any, address: str, port: int, config: Config, *, tls: bool = False) -> Server:
    """An embedded granian server sharing our event loop, so every app sees the same objects.

    HTTP/1 only: in granian's `auto` mode a connection that sends nothing is held open forever
    (the protocol sniffing waits for a first byte without a time limit), while in HTTP/1 mode
    `header_read_timeout` runs from the connection's start and between keep-alive requests, so
    silent and idle connections are closed after `http_idle_timeout`. NodeODM clients speak
    HTTP/1.1; over TLS, ALPN offers http/1.1.
    """
    ssl: dict[str, Any] = {}
    if tls:
        ssl = {"ssl_cert": Path(config.ssl_cert), "ssl_key": Path(config.ssl_key)}
    return ExclusiveServer(
        app,
        address=address,
        port=port,
        interface=Interfaces.ASGINL,
        http=HTTPModes.http1,
        log_enabled=False,
        backlog=1024,
        http1_settings=HTTP1Settings(
            max_buffer_size=READ_BUFFER_BYTES, header_read_timeout=round(config.http_idle_timeout * 1000)
        ),
        **ssl,
    )


async def _serve_until_stopped(
    servers: list[Server],
    jobs: list[Callable[[], Coroutine[Any, Any, None]]],
    before_stop: Callable[[], None],
) -> int | None:
    """Serve until SIGINT/SIGTERM or until a server ends on its own; returns the port of a server
    that could not listen because another process took its port after `check_ports_free`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = [asyncio.create_task(s.serve(), name=f"granian:{s.bind_port}") for s in servers]
    background: list[asyncio.Task[None]] = [asyncio.create_task(job()) for job in jobs]
    for task in background:
        task.add_done_callback(_report_job_failure)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *serving], return_when=asyncio.FIRST_COMPLETED)
    taken = None
    for task in done:
        if task is waiter:
            continue
        error = task.exception()
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            taken = int(task.get_name()[8:])  # reported by the caller, with the flag to change
        else:
            # A server ended on its own (TLS file unreadable...): shut everything down. Only the
            # first line: granian's errors carry a Rust backtrace after it.
            reason = str(error).partition("\n")[0]
            log.error("the server on port %s stopped unexpectedly: %s", task.get_name()[8:], reason)
    log.info("shutting down")
    before_stop()
    for s in servers:
        s.stop()
    for task in background:
        task.cancel()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*serving, *background, return_exceptions=True), SHUTDOWN_GRACE_S
        )
    return taken


def _report_job_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background job failed: %r", task.exception(), exc_info=task.exception())


class Extension(Protocol):
    """Something that lives with the cluster: `clusterodm demo` adds its simulated nodes."""

    async def attach(self, cluster: Cluster) -> list[Job]:
        """Called once the state is loaded, before the servers start; returns jobs to run beside them."""
        ...

    async def detach(self, cluster: Cluster) -> None:
        """Called after the servers stopped, before the state is saved and closed."""
        ...


def _listeners(config: Config) -> list[tuple[str, str, int]]:
    """(flag, address, port) of every port clusterodm listens on (0: that listener is off)."""
    wanted = [("--port", config.bind, config.port), ("--secure-port", config.bind, config.secure_port)]
    wanted += [("--admin-cli-port", config.admin_address, config.admin_cli_port)]
    wanted += [("--admin-web-port", config.admin_address, config.admin_web_port)]
    return [(flag, address, port) for flag, address, port in wanted if port]


def _in_use(flag: str, address: str, port: int) -> ConfigError:
    return ConfigError(
        f"port {port} ({flag}) is already in use on {address}: stop what listens there "
        f"or choose another port with {flag}"
    )


def check_ports_free(config: Config) -> None:
    """Refuse to start, in one line, when a port is taken (a NodeODM already on 3000, a second
    clusterodm): the server would otherwise fail after loading the state. A process taking the
    port between this check and the servers' start is refused by the bind itself (`exclusive.py`)."""
    for flag, address, port in _listeners(config):
        try:
            family, kind, proto, _, where = socket.getaddrinfo(
                address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
                probe.bind(where)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise _in_use(flag, address, port) from None
            raise ConfigError(f"cannot listen on {address}:{port} ({flag}): {e.strerror or e}") from None


async def run(config: Config, extension: Extension | None = None) -> None:
    """Build the shared objects, start every listener, stop cleanly on SIGINT/SIGTERM."""
    from clusterodm.services import Cluster

    check_ports_free(config)
    cluster = await Cluster.open(config)
    try:
        jobs = cluster.background_jobs()
        if extension is not None:
            jobs += await extension.attach(cluster)
        if not len(cluster.registry):
            log.warning("%s", no_node_notice(config))
        servers = cluster.http_servers(http_server)
        taken = await _serve_until_stopped(servers, jobs, cluster.stop_streams)
        if taken is not None:  # exit 2 with the same line as when the port was taken before
            flag, address, port = next(item for item in _listeners(config) if item[2] == taken)
            raise _in_use(flag, address, port)
    finally:
        try:
            if extension is not None:
                await extension.detach(cluster)
        finally:
            await cluster.close()
            log.info("state saved, bye")


def serve(config: Config, extension: Extension | None = None) -> None:
    """Run clusterodm in this process until SIGINT/SIGTERM (logging already set up)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run(config, extension))
    except (ConfigError, StoreError) as e:  # found while loading state (store, limits, autoscaler...)
        fail(str(e))
    finally:
        _close_loop(loop)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:  # ClusterODM takes no positional argument: this cannot shadow a flag
        from clusterodm.demo import main as demo_main

        raise SystemExit(demo_main(args[1:]))
    config = config_or_exit(args)
    setup_logging(config.log_level, config.log_format)
    serve(config)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left and close, waiting a bounded time: unlike `asyncio.run`, a task that
    swallows its cancellation (a timeout racing the cancel, say) cannot keep the process alive."""
    leftover = asyncio.all_tasks(loop)
    for task in leftover:
        task.cancel()
    if leftover:
        _, stubborn = loop.run_until_complete(asyncio.wait(leftover, timeout=LEFTOVER_GRACE_S))
        for task in stubborn:
            log.warning("exiting although a task did not stop when cancelled: %r", task.get_coro())
    with contextlib.suppress(TimeoutError):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), LEFTOVER_GRACE_S))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


if __name__ == "__main__":
    main()
