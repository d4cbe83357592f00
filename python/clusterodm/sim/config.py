"""Simulator settings, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SimConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 3000
    token: str | None = None
    max_images: int | None = None
    parallel_tasks: int = 1
    processing_seconds: float = 2.0
    processing_time_tick: float = 1.0
    fail_tasks: bool = False
    drop_uploads: float = 0.0
    seed: int | None = None
    asset_size: int = 1024 * 1024
    latency_ms: float = 0.0
    webhook: str | None = None
    webhook_retry_seconds: float = 5.0
    engine_version: str = "3.5.1"

    @property
    def uploads_dir(self) -> Path:
        """Chunked uploads in progress: ``tmp/{uuid}/`` with ``body.json``."""
        return self.data_dir / "tmp"

    @property
    def tasks_dir(self) -> Path:
        return self.data_dir / "tasks"
