"""The objects every part of clusterodm shares, created once in `main` and handed to each app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clusterodm.config import Config

log = logging.getLogger("clusterodm")


@dataclass
class Cluster:
    config: Config
    jobs: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    async def open(cls, config: Config) -> Cluster:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.tmp_dir.mkdir(parents=True, exist_ok=True)
        return cls(config=config)

    def http_servers(self, make: Callable[..., Any]) -> list[Any]:
        from clusterodm.proxy.app import create_app

        cfg = self.config
        proxy = create_app(self)
        servers = []
        if cfg.ssl and cfg.secure_port:
            servers.append(make(proxy, cfg.bind, cfg.port, cfg))
            servers.append(make(proxy, cfg.bind, cfg.secure_port, cfg, tls=True))
        else:
            servers.append(make(proxy, cfg.bind, cfg.port, cfg, tls=cfg.ssl))
        log.info(
            "NodeODM API listening on %s://%s:%d",
            "https" if cfg.ssl and not cfg.secure_port else "http",
            cfg.bind,
            cfg.port,
        )
        return servers

    def background_jobs(self) -> list[Callable[[], Awaitable[None]]]:
        return list(self.jobs)

    async def close(self) -> None:
        pass
