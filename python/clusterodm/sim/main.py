"""``clusterodm-simnode``: run a simulated NodeODM node (served by granian) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from granian.constants import Interfaces
from granian.log import LogLevels

from clusterodm.exclusive import ExclusiveServer
from clusterodm.sim.app import create_app
from clusterodm.sim.config import SimConfig

log = logging.getLogger("clusterodm.sim")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterodm-simnode", description="Simulated NodeODM 2.2.4 API node.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000, help="port to listen on (default 3000)")
    p.add_argument("--token", default=None, help="require this token (query parameter 'token')")
    p.add_argument("--max-images", type=int, default=None, help="image limit per task (default none)")
    p.add_argument("-q", "--parallel-tasks", type=int, default=1, help="tasks processed at once (default 1)")
    p.add_argument("--processing-seconds", type=float, default=2.0, help="how long a task runs (default 2)")
    p.add_argument(
        "--processing-time-tick",
        type=float,
        default=1.0,
        help="seconds between processingTime updates; -1 until the first (NodeODM: 1, default 1)",
    )
    p.add_argument("--fail-tasks", action="store_true", help="tasks end FAILED ('Cannot process dataset')")
    p.add_argument("--drop-uploads", type=_fraction, default=0.0, help="fraction of uploads answered 500")
    p.add_argument("--seed", type=int, default=None, help="random seed for --drop-uploads")
    p.add_argument(
        "--asset-size", type=int, default=1024 * 1024, help="all.zip size in bytes (default 1 MiB)"
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every response")
    p.add_argument("--webhook", default=None, help="node-wide webhook URL called when tasks finish")
    p.add_argument("--webhook-retry-seconds", type=float, default=5.0, help="retry base delay (default 5)")
    p.add_argument("--engine-version", default="3.5.1", help="engineVersion reported by /info")
    p.add_argument("--data-dir", type=Path, default=None, help="where uploads and assets go (default: temp)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


async def serve(config: SimConfig, log_level: str) -> None:
    """Serve until a stop signal arrives, then shut down the server and background jobs."""
    app = create_app(config)
    # Not shared either: two simulators started on one port must not split its clients silently.
    server = ExclusiveServer(
        app, address=config.host, port=config.port, interface=Interfaces.ASGI, log_level=LogLevels(log_level)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    serving = asyncio.create_task(server.serve())
    log.info(
        "simulated NodeODM listening on http://%s:%d (data dir %s)", config.host, config.port, config.data_dir
    )
    await serving
    log.info("simulated NodeODM stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with tempfile.TemporaryDirectory(prefix="simnode-") as tmp:
        config = SimConfig(
            data_dir=(args.data_dir or Path(tmp)).resolve(),
            host=args.host,
            port=args.port,
            token=args.token,
            max_images=args.max_images,
            parallel_tasks=max(1, args.parallel_tasks),
            processing_seconds=max(0.0, args.processing_seconds),
            processing_time_tick=max(0.0, args.processing_time_tick),
            fail_tasks=args.fail_tasks,
            drop_uploads=args.drop_uploads,
            seed=args.seed,
            asset_size=max(0, args.asset_size),
            latency_ms=max(0.0, args.latency_ms),
            webhook=args.webhook,
            webhook_retry_seconds=args.webhook_retry_seconds,
            engine_version=args.engine_version,
        )
        asyncio.run(serve(config, args.log_level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
