"""Task lifecycle: initialisation, the processing queue with a fixed number of slots, and the fake engine.

Status sequence after commit mirrors NodeODM: 20 (initialising) -> 10 (queued) -> 20 (running) ->
40/30/50. The "engine" replays captured console lines over ``processing_seconds`` (or the task's own
``sim-seconds=N`` from its name, see ``sim.task``) and builds all.zip; a split-merge task first
runs its submodels on its ``sm-cluster`` (``sim.splitmerge``). With ``--parallel-tasks``
slots (NodeODM's ``maxParallelTasks``) busy, further tasks wait QUEUED on the node, as NodeODM's do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from clusterodm.nodeodm import messages
from clusterodm.nodeodm.names import classify_upload
from clusterodm.nodeodm.options import add_post_processing_options
from clusterodm.nodeodm.status import ACTIVE_STATUSES, RESTARTABLE_STATUSES, TaskStatus
from clusterodm.sim import splitmerge, zipurl
from clusterodm.sim.assets import build_all_zip, select_members
from clusterodm.sim.config import SimConfig
from clusterodm.sim.resources import NodeData
from clusterodm.sim.task import Task, now_ms, sim_seconds
from clusterodm.sim.webhooks import WebhookSender

log = logging.getLogger("clusterodm.sim.tasks")
T = TypeVar("T")
TICK_SECONDS = 0.1
INIT_SECONDS = 0.05
"""How long a committed task stays in the initialising RUNNING state before it is queued."""


class _EngineFailure(Exception):
    pass


class _InitFailure(Exception):
    """Initialisation failed; the message becomes the task's ``errorMessage``."""


def count_images(directory: Path) -> int:
    """Files that NodeODM would leave in the images folder (GCP, alignment, zips are moved out)."""
    if not directory.is_dir():
        return 0
    return sum(1 for p in directory.iterdir() if p.is_file() and classify_upload(p.name) == "image")


def image_metadata(name: str) -> dict[str, Any]:
    """One entry of ODM's images.json; the simulator's images carry no EXIF, so fixed camera values."""
    return {
        "filename": name,
        "mask": None,
        "width": 4000,
        "height": 3000,
        "camera_make": "DJI",
        "camera_model": "FC6310",
        "orientation": 1,
        "latitude": None,
        "longitude": None,
        "altitude": None,
        "focal_ratio": 0.8,
    }


def write_images_json(task: Task) -> None:
    """ODM's first stage lists the task's images in ``images.json`` in the project folder."""
    names = (
        sorted(p.name for p in task.images_dir.iterdir() if p.is_file()) if task.images_dir.is_dir() else []
    )
    task.images_json_path.write_text(
        json.dumps([image_metadata(n) for n in names], indent=2), encoding="utf-8"
    )


def read_images_json(task: Task) -> list[Any]:
    """The images.json NodeODM reads for the webhook: missing or unreadable gives []."""
    try:
        images = json.loads(task.images_json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return images if isinstance(images, list) else []


class TaskManager:
    """Owns every task of the simulated node; all methods run on the server's event loop."""

    def __init__(self, config: SimConfig, data: NodeData, webhooks: WebhookSender) -> None:
        self.config = config
        self.data = data
        self.webhooks = webhooks
        self.tasks: dict[str, Task] = {}
        """Every task in the order it was first added, which is also the order queued tasks run in."""
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.max_queue_count = 0
        """Simulator only: the most tasks this node ever held queued or running at once (tests
        check that a proxy never put more tasks on it than it has slots)."""
        self.max_running = 0
        """Simulator only: the most tasks it ever processed at once."""

    # -- queries ---------------------------------------------------------------------------------------

    def get(self, uuid: str) -> Task | None:
        return self.tasks.get(uuid)

    def queue_count(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status in ACTIVE_STATUSES)

    def _count_load(self) -> None:
        self.max_queue_count = max(self.max_queue_count, self.queue_count())
        self.max_running = max(self.max_running, len(self._runners))

    # -- creation --------------------------------------------------------------------------------------

    def create(
        self,
        uuid: str,
        upload_dir: Path,
        *,
        name: str | None,
        date_created: int,
        options: list[dict[str, Any]],
        skip_post_processing: bool,
        webhook: str | None,
        outputs: list[str] | None,
        zipurl: str | None,
    ) -> Task:
        """Register a task from a directory of uploaded files and start initialising it."""
        directory = self.config.tasks_dir / uuid
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir()
        upload_dir.rename(directory / "images")
        task = Task(
            uuid=uuid,
            directory=directory,
            name=name,
            date_created=date_created,
            options=add_post_processing_options(options, self.data.options, skip_post_processing),
            images_count=sum(1 for _ in (directory / "images").iterdir()),
            webhook=webhook or None,
            skip_post_processing=skip_post_processing,
            outputs=outputs,
            zipurl=zipurl,
            time_tick=self.config.processing_time_tick,
        )
        self.tasks[uuid] = task
        self._count_load()
        self._spawn(self._initialize(task))
        log.info("task %s created with %d files", uuid, task.images_count)
        return task

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        job = asyncio.create_task(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        return job

    async def _initialize(self, task: Task) -> None:
        """NodeODM's initialisation: fetch the zipurl, check the image limit, unzip, move GCP files.

        The limit counts every file uploaded (and the downloaded archive), ``.txt`` and ``.zip``
        included, before anything is moved away: 5 images + ``gcp_list.txt`` on a node with
        maxImages 5 fail with "6 images uploaded". A failure leaves the task FAILED with the raw
        message, no webhook, and counted as initialised: a restart runs it as it is, unchecked.
        """
        await asyncio.sleep(INIT_SECONDS)
        if not self._initializing(task):
            return  # cancelled or removed meanwhile
        try:
            if task.zipurl:
                await zipurl.download(task.zipurl, task.images_dir / zipurl.ARCHIVE_NAME)
                if not self._initializing(task):
                    return
            uploaded = sum(1 for p in task.images_dir.iterdir() if p.is_file())
            limit = self.config.max_images
            if limit is not None and uploaded > limit:
                raise _InitFailure(messages.too_many_images(uploaded, limit))
            await self.on_disk(task, self._arrange_files, task)
        except (zipurl.ZipUrlError, _InitFailure) as exc:
            task.initialized = True
            task.status = TaskStatus.FAILED
            task.error_message = str(exc)
            log.info("task %s failed at init: %s", task.uuid, task.error_message)
            return
        if not self._initializing(task):
            return
        task.images_count = count_images(task.images_dir)
        task.initialized = True
        self._enqueue(task)

    @staticmethod
    async def on_disk(task: Task, work: Callable[..., T], *args: Any) -> T:
        """Run `task`'s file work in a thread. A cancelled caller does not stop the thread, so
        the work is tracked until it ends: `remove` waits for it rather than deleting the folder
        while the thread still writes into it (which would leave files behind)."""
        future = asyncio.get_running_loop().run_in_executor(None, work, *args)
        task.disk_work.add(future)
        future.add_done_callback(task.disk_work.discard)
        return await asyncio.shield(future)

    def _initializing(self, task: Task) -> bool:
        return task.status == TaskStatus.RUNNING and not task.initialized and task.uuid in self.tasks

    @staticmethod
    def _arrange_files(task: Task) -> None:
        """Unzip archives into the images folder, then move ``*.txt`` (GCP, geo...) to ``gcp/``."""
        zipurl.extract_all(task.images_dir)
        gcp = task.directory / "gcp"
        gcp.mkdir(exist_ok=True)
        for path in task.images_dir.iterdir():
            if path.is_file() and path.name.lower().endswith(".txt"):
                path.rename(gcp / path.name)

    # -- queue and engine ------------------------------------------------------------------------------

    def _enqueue(self, task: Task) -> None:
        task.status = TaskStatus.QUEUED
        self._schedule()

    def _schedule(self) -> None:
        """Fill free slots with queued tasks, oldest first.

        NodeODM picks the first QUEUED task in its task table, which keeps the order tasks were
        first added: a restarted old task runs before a newer one that has waited longer.
        """
        free = self.config.parallel_tasks - len(self._runners)
        if free <= 0:
            return
        queued = [
            t for t in self.tasks.values() if t.status == TaskStatus.QUEUED and t.uuid not in self._runners
        ]
        for task in queued[:free]:
            self._runners[task.uuid] = self._spawn(self._run(task))
        self._count_load()

    async def _run(self, task: Task) -> None:
        task.status = TaskStatus.RUNNING
        task.started = True
        task.progress = 0.0
        task.start_clock()
        log.info("task %s running", task.uuid)
        try:
            await self.on_disk(task, write_images_json, task)
            split = splitmerge.plan(task.options, task.images_count)
            if split is not None:
                await splitmerge.run(task.name or task.uuid, task.images_dir, *split, task.output)
            await self._process(task)
            task.progress = 93.0
            task.output.append("Compressing all.zip\n")
            members = select_members(self.data.allzip_members, task.outputs)
            images_json = await self.on_disk(task, task.images_json_path.read_bytes)
            await self.on_disk(
                task,
                build_all_zip,
                task.zip_path,
                members,
                self.config.asset_size,
                list(task.output),
                images_json,
            )
            task.progress = 100.0
            task.status = TaskStatus.COMPLETED
        except _EngineFailure:
            task.status = TaskStatus.FAILED
            task.error_message = messages.CANNOT_PROCESS
        except splitmerge.SplitMergeError as exc:
            task.status = TaskStatus.FAILED
            task.error_message = str(exc)
            task.output.append(f"{exc}\n")
        except asyncio.CancelledError:
            pass  # cancel() already set the status; finish the bookkeeping below
        finally:
            task.stop_clock()
            if task.status == TaskStatus.CANCELED:
                task.reset_clock()
            self._runners.pop(task.uuid, None)
            log.info("task %s finished with status %d", task.uuid, task.status)
            self._notify(task)
            self._schedule()

    async def _process(self, task: Task) -> None:
        """Replay engine output progressively; progress goes to 90 % like NodeODM's scaled engine progress."""
        lines = [line for line in self.data.output_lines if line != "Compressing all.zip\n"]
        seconds = self.processing_seconds(task)
        steps = max(1, round(seconds / TICK_SECONDS))
        emitted = 0
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            upto = len(lines) * step // steps
            task.output.extend(lines[emitted:upto])
            emitted = upto
            task.progress = 90.0 * step / steps
            if self.config.fail_tasks and step * 2 >= steps:
                raise _EngineFailure

    def processing_seconds(self, task: Task) -> float:
        """The task's own ``sim-seconds=N`` (read from its current name), else the node's setting."""
        own = sim_seconds(task.name)
        return self.config.processing_seconds if own is None else own

    def _notify(self, task: Task) -> None:
        """NodeODM's webhook body: the task info plus ``images``, the task's images.json (or [])."""
        urls = [u for u in (task.webhook, self.config.webhook) if u]
        if urls:
            self.webhooks.send(urls, {**task.info(), "images": read_images_json(task)})

    # -- management ------------------------------------------------------------------------------------

    def cancel(self, uuid: str) -> bool:
        task = self.tasks.get(uuid)
        if task is None:
            return False
        if task.status == TaskStatus.CANCELED:
            return True
        task.status = TaskStatus.CANCELED
        task.reset_clock()
        runner = self._runners.get(uuid)
        if runner is not None:
            runner.cancel()
        log.info("task %s canceled", uuid)
        return True

    async def remove(self, uuid: str) -> bool:
        if not self.cancel(uuid):
            return False
        task = self.tasks.pop(uuid)
        if task.disk_work:  # as NodeODM stops its engine before deleting the folder
            await asyncio.wait(set(task.disk_work))
        await asyncio.to_thread(shutil.rmtree, task.directory, True)
        log.info("task %s removed", uuid)
        return True

    def restart(self, uuid: str, options: list[dict[str, Any]] | None) -> str | None:
        """Restart a finished task; returns an error message or None on success."""
        task = self.tasks.get(uuid)
        if task is None:
            return messages.task_not_found(uuid)
        if task.status not in RESTARTABLE_STATUSES:
            return messages.CANNOT_RESTART
        if options is not None:
            task.options = add_post_processing_options(options, self.data.options, task.skip_post_processing)
        task.output.clear()
        task.progress = 0.0
        task.error_message = None
        task.date_created = now_ms()
        task.reset_clock()
        # all.zip stays: NodeODM serves the previous one until the new run replaces it.
        if task.initialized:
            self._enqueue(task)
        else:
            task.status = TaskStatus.RUNNING
            self._spawn(self._initialize(task))
        self._count_load()
        log.info("task %s restarted", uuid)
        return None

    async def aclose(self) -> None:
        """Stop every background job (server shutdown)."""
        for job in list(self._background):
            job.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
