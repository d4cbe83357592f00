"""The simulated task: state plus its NodeODM task-info rendering (spec 1.3).

Simulator only: a task whose name contains ``sim-seconds=N`` (N a non-negative number of seconds,
e.g. ``survey-7 sim-seconds=30``) is processed for N seconds instead of the node's
``--processing-seconds``, so one workload can mix short and long tasks. The name is used because it
reaches a node unchanged through any proxy (an unknown option would be refused by option checks);
NodeODM itself gives the name no meaning.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clusterodm.nodeodm.jsnum import slice_lines
from clusterodm.nodeodm.status import TaskStatus


def now_ms() -> int:
    return int(time.time() * 1000)


_SIM_SECONDS = re.compile(r"(?:^|\s)sim-seconds=(\d+(?:\.\d*)?|\.\d+)(?=\s|$)")


def sim_seconds(name: str | None) -> float | None:
    """The processing time a task name asks for with ``sim-seconds=N``, or None (the node's default)."""
    match = _SIM_SECONDS.search(name or "")
    return float(match.group(1)) if match else None


def default_task_name(date_ms: int) -> str:
    """NodeODM's name for an empty ``name`` field: ``Task of <ISO-8601 UTC with ms>``."""
    moment = datetime.fromtimestamp(date_ms / 1000, tz=UTC)
    return "Task of " + moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Task:
    uuid: str
    directory: Path
    name: str | None
    date_created: int
    options: list[dict[str, Any]]
    images_count: int
    webhook: str | None = None
    skip_post_processing: bool = False
    outputs: list[str] | None = None
    zipurl: str | None = None
    status: TaskStatus = TaskStatus.RUNNING
    error_message: str | None = None
    progress: float = 0.0
    output: list[str] = field(default_factory=list)
    initialized: bool = False
    started: bool = False
    time_tick: float = 1.0
    """NodeODM refreshes ``processingTime`` once a second: -1 until the first tick, then stepwise."""
    _started_at: float | None = None
    _final_time: int = -1
    disk_work: set[asyncio.Future[Any]] = field(default_factory=set, repr=False)
    """File work of this task running in threads (see `TaskManager.on_disk`)."""

    @property
    def images_dir(self) -> Path:
        return self.directory / "images"

    @property
    def zip_path(self) -> Path:
        return self.directory / "all.zip"

    @property
    def images_json_path(self) -> Path:
        return self.directory / "images.json"

    @property
    def processing_time(self) -> int:
        """-1 before start and until the first tick, stepwise while running, exact once finished."""
        if self._started_at is None:
            return self._final_time
        elapsed = time.monotonic() - self._started_at
        if self.time_tick <= 0:
            return int(elapsed * 1000)
        ticks = int(elapsed // self.time_tick)
        return int(ticks * self.time_tick * 1000) if ticks else -1

    def start_clock(self) -> None:
        self._started_at = time.monotonic()
        self._final_time = -1

    def stop_clock(self) -> None:
        if self._started_at is not None:
            self._final_time = int((time.monotonic() - self._started_at) * 1000)
        self._started_at = None

    def reset_clock(self) -> None:
        self._started_at = None
        self._final_time = -1

    def info(self, with_output: int | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {"code": int(self.status)}
        if self.error_message is not None:
            status["errorMessage"] = self.error_message
        data: dict[str, Any] = {"uuid": self.uuid}
        if self.name is not None:
            data["name"] = self.name
        progress = round(self.progress, 2)
        data.update(
            {
                "dateCreated": self.date_created,
                "processingTime": self.processing_time,
                "status": status,
                "options": self.options,
                "imagesCount": self.images_count,
                "progress": int(progress) if progress.is_integer() else progress,
            }
        )
        if with_output is not None:
            data["output"] = slice_lines(self.output, with_output)
        return data
