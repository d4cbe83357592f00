"""A task's file work in threads outlives a cancelled caller: `remove` must wait for it, as NodeODM
stops its engine before deleting the task folder (else files are written into a folder being
deleted, and some stay behind)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from clusterodm.sim.task import Task
from clusterodm.sim.tasks import TaskManager
from support.aio import async_test


@async_test
async def test_file_work_stays_tracked_until_its_thread_ends_though_its_caller_was_cancelled(
    tmp_path: Path,
) -> None:
    task = Task("u", tmp_path, None, 0, [], 0)
    release = threading.Event()
    caller = asyncio.create_task(TaskManager.on_disk(task, release.wait, 10))
    await asyncio.sleep(0)  # the caller runs up to its wait on the thread
    assert len(task.disk_work) == 1
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(task.disk_work) == 1  # its thread still runs: not done as far as `remove` is told
    release.set()
    done, _ = await asyncio.wait(set(task.disk_work), timeout=10)
    assert len(done) == 1 and not task.disk_work
