"""One attempt to hand a task to one node: init with `set-uuid`, uploads fed file by file, commit.

Files are added as they become complete in `tmp/{uuid}/` (while the client is still uploading, or
all at once for a post-commit attempt) and go to the node in batches: several files per multipart
request, sent from disk with `sendfile` (nothing of them held in memory). While the client is
still uploading, a batch goes once it is full (`BATCH_FILES` files or `BATCH_BYTES`) or its oldest
file waited `LINGER_S`, so a thousand small files cost the node a few dozen requests, not a
thousand, and after the client's commit at most a partial batch is left; once the feed is closed,
what is left is shared out among the workers. With stream-through, big files still arriving are
piped on as they are written (`stream`, see `streaming.STREAM_AFTER_BYTES`), each in its own
request; a stream that failed before the node got any of its file hands it back to the batches.

The node's upload folder must end with exactly the complete files: a NodeODM node keeps whatever a
broken upload request brought (the parts before, the cut-off one). So a request that broke after
it reached the node is never retried in the same attempt: it fails the attempt (a streamed file
the client did not complete, a batch cut by a reset), and the node is cleared (`Leftovers`) before
it gets this task again. `finish()` closes the feed, waits for the uploads and commits on the node;
`abort()` stops everything and asks the node to forget the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterodm.cluster.node import Node
from clusterodm.pipeline.leftovers import Leftovers
from clusterodm.pipeline.streaming import FileStream, StreamAborted, StreamBody
from clusterodm.pipeline.transfer import (
    Body,
    ForwardError,
    MultipartBody,
    Progress,
    RateLimiter,
    StallPolicy,
    UrlEncoded,
    post_json,
)

if TYPE_CHECKING:
    from clusterodm.cluster.slots import Slots

log = logging.getLogger("clusterodm.pipeline")

BATCH_FILES = 50
"""Files per upload request to the node, at most."""
BATCH_BYTES = 16 << 20
"""A batch goes once its files reach this size while the client still uploads: bounds the tail left
after commit and what a failed request costs. Files at least this big go alone."""
MAX_BATCH_BYTES = 512 << 20
"""Once the client committed (or after a restart), a batch may be this big when that shares the
files out evenly among the workers."""
LINGER_S = 1.0
"""While the client still uploads, a file waits at most this long for its batch to fill."""
BATCH_ATTEMPTS = 8
BATCH_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0)
PROGRESS_INTERVAL_S = 2.0
ABORT_WAIT_S = 1.0
MAX_STREAMS = 16
"""Files piped on while still arriving, at most (more go from disk once complete)."""

Prepare = Callable[[Node], Awaitable[list[tuple[str, str]]]]
"""The init fields for this node (options validated against it); raises ForwardError to refuse."""


@dataclass
class Link:
    """What every attempt shares: the global rate cap, the node registry, the stall policy, and what
    failed attempts left on nodes."""

    limiter: RateLimiter
    concurrency: int
    slots: Slots
    stall: StallPolicy
    leftovers: Leftovers


class NodeAttempt:
    """Init, uploads and commit of one task on one node, run as one asyncio task."""

    def __init__(
        self,
        node: Node,
        uuid: str,
        directory: Path,
        prepare: Prepare,
        link: Link,
        say: Callable[[str], None],
        *,
        zipurl: str | None = None,
    ) -> None:
        self.node = node
        self.uuid = uuid
        self.directory = directory
        self.fields: list[tuple[str, str]] = []
        """The init fields sent to the node (set once prepared)."""
        self.progress = Progress(0, 0)
        self._prepare = prepare
        self._link = link
        self._say = say
        self._zipurl = zipurl
        self._pending: list[str] = []
        self._sizes: dict[str, int] = {}
        """Sizes of the queued files (pending or being sent)."""
        self._queued_at: dict[str, float] = {}
        """When each pending file was queued (the linger clock)."""
        self._pending_bytes = 0
        self._linger: asyncio.TimerHandle | None = None
        self._known: set[str] = set()
        self._closed = asyncio.Event()
        self._more = asyncio.Event()
        self._inflight = 0
        self._job: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        """The node has the task initialised: uploads may go."""
        self._streams: dict[FileStream, asyncio.Task[None]] = {}
        self._spoiled: str | None = None
        """Why the node's upload folder can no longer become the task (then the attempt fails)."""
        self._spoil = asyncio.Event()
        self._commit_sent = False
        """A commit (or the single-shot `/task/new`) went out: the node may hold the task."""

    # -- feeding -------------------------------------------------------------------------------

    def add(self, names: Iterable[str]) -> None:
        """Queue files (complete on disk) for upload; names already queued are ignored."""
        for name in names:
            if name in self._known or any(s.claims(name) for s in self._streams):
                continue
            try:
                size = (self.directory / name).stat().st_size
            except OSError:
                continue
            self._known.add(name)
            self._pending.append(name)
            self._sizes[name] = size
            self._queued_at[name] = time.monotonic()
            self._pending_bytes += size
            self.progress.files_total += 1
            self.progress.bytes_total += size
        self._wake()

    def _wake(self) -> None:
        """Wake the workers if a batch is ready; else make sure one will be when the oldest file's
        linger is over (one timer, not a timeout per worker and file)."""
        if self._batch_ready():
            self._more.set()
        elif self._pending and self._linger is None:
            due = self._queued_at[self._pending[0]] + LINGER_S
            self._linger = asyncio.get_running_loop().call_at(due, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        self._wake()

    def start(self) -> None:
        self._job = asyncio.get_running_loop().create_task(self._run())

    def stream(self, source: FileStream) -> bool:
        """Pipe a file that is still arriving to the node; False (nothing started) if not now."""
        job = self._job
        if job is None or job.done() or self._closed.is_set() or len(self._streams) >= MAX_STREAMS:
            return False
        if any(s.name == source.name for s in self._streams):
            return False  # two files arriving under one name: only one can keep it, the other goes later
        task = asyncio.get_running_loop().create_task(self._stream(source))
        self._streams[source] = task
        task.add_done_callback(lambda _: self._stream_done(source))
        return True

    @property
    def failed(self) -> bool:
        job = self._job
        return job is not None and job.done() and (job.cancelled() or job.exception() is not None)

    @property
    def failure(self) -> str:
        """Why the attempt failed (for logs), once `failed`."""
        job = self._job
        if job is None or not job.done():
            return ""
        return "cancelled" if job.cancelled() else str(job.exception())

    async def finish(self) -> None:
        """No more files: wait until the node has the task committed (ForwardError otherwise)."""
        assert self._job is not None, "start() first"
        self._closed.set()
        self._more.set()
        await asyncio.shield(self._job)

    async def abort(self) -> None:
        """Stop within a second and, if the commit went out, ask the node in the background to remove
        the task. Before that, `/task/remove` could only hit a task of this uuid that a later attempt
        (or the clearing of leftovers) committed there: NodeODM knows only committed tasks, and what
        an uncommitted upload left is cleared by `Leftovers` before the node gets this task again."""
        job = self._job
        if job is None:
            return
        if not job.done():
            job.cancel()
            await asyncio.wait({job}, timeout=ABORT_WAIT_S)
        if job.done() and not job.cancelled():
            job.exception()  # retrieved: an aborted attempt's failure is not news
        if self._commit_sent:
            asyncio.get_running_loop().create_task(self.forget())

    async def forget(self) -> None:
        """Best effort `/task/remove` (NodeODM only knows committed tasks; its own cleanup takes the rest)."""
        with contextlib.suppress(ForwardError, asyncio.CancelledError):
            await post_json(self.node, "/task/remove", UrlEncoded({"uuid": self.uuid}), {})

    # -- the job -------------------------------------------------------------------------------

    async def _run(self) -> None:
        slots = self._link.slots
        helpers: list[asyncio.Task[None]] = []
        committed = False
        try:
            # Usually claimed when the node was chosen (`Slots.take`, or `overflow` for a full one):
            # then this is a no-op. An attempt started while the client uploads claims here, and
            # gives way if the node's last free slot went to another forward meanwhile.
            if not await slots.claim(self.node, self.uuid):
                raise ForwardError(f"{self.node.name} has no free slot any more")
            self.fields = await self._prepare(self.node)
            headers = {"set-uuid": self.uuid}
            # An earlier attempt may have left files of this task on this node: they go first.
            cleared = await self._link.leftovers.clear(self.node, self.uuid)
            if self._zipurl is not None:
                await self._closed.wait()
                await self._single_shot(headers)
                committed = True
                return
            init = MultipartBody(self.fields, [], self._link.limiter, self.progress)
            self._check_uuid(await self._post("/task/new/init", init, headers))
            self._ready.set()
            loop = asyncio.get_running_loop()
            helpers = [
                loop.create_task(self._report()),
                loop.create_task(self._watch_stall()),
                loop.create_task(self._watch_spoil()),
            ]
            uploads = loop.create_task(self._uploads())
            watchers = set(helpers[1:])
            done, _ = await asyncio.wait({uploads, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            if uploads not in done:
                uploads.cancel()
                await asyncio.gather(uploads, return_exceptions=True)
                for watcher in done:
                    watcher.result()
            uploads.result()
            if self._spoiled is not None:
                raise ForwardError(self._spoiled)
            self._commit_sent = True
            self._check_uuid(await self._post(f"/task/new/commit/{self.uuid}", None, {}))
            if cleared:  # a request cut before the clearing may still have written into this upload
                await self._link.leftovers.check_count(self.node, self.uuid, self.progress.files_total)
            self._link.leftovers.committed(self.node, self.uuid)
            committed = True
            self._say(self.progress.line(self.node))
        finally:
            if self._linger is not None:
                self._linger.cancel()
            helpers += self._streams.values()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.shield(self._end_claim(committed))

    async def _end_claim(self, committed: bool) -> None:
        """The node has the task (its slot stays claimed until a poll counts it), or it will not."""
        try:
            if committed:
                await self._link.slots.placed(self.uuid)
            else:
                await self._link.slots.release(self.uuid, self.node)
        except Exception as exc:  # a dead replica's claims are dropped by the leader
            log.warning("Task %s: cannot update the slot claim on %s: %s", self.uuid, self.node.name, exc)

    async def _single_shot(self, headers: dict[str, str]) -> None:
        """zipurl tasks: one `/task/new` carrying the fields, the URL and any uploaded files."""
        self.add([])
        files = [self.directory / n for n in self._pending]
        fields = [*self.fields, ("zipurl", self._zipurl or "")]
        body = MultipartBody(fields, files, self._link.limiter, self.progress)
        self._link.leftovers.touched(self.node, self.uuid)
        self._commit_sent = True
        self._check_uuid(await self._post("/task/new", body, headers))
        self._link.leftovers.committed(self.node, self.uuid)
        self.progress.files_done, self.progress.bytes_done = (
            self.progress.files_total,
            self.progress.bytes_total,
        )

    async def _uploads(self) -> None:
        """The upload workers; the first failed batch fails the attempt (as a plain ForwardError)."""
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, self._link.concurrency)):
                    group.create_task(self._worker())
        except BaseExceptionGroup as failed:
            first = next((e for e in failed.exceptions if isinstance(e, ForwardError)), None)
            if first is None:
                raise
            raise first from None

    async def _next_batch(self) -> list[str] | None:
        """The next batch to send (`_batch_ready`); None once closed and all taken."""
        while not self._batch_ready():
            if not self._pending and self._closed.is_set() and not self._streams:
                return None
            self._more.clear()
            self._wake()
            await self._more.wait()
        budget = BATCH_BYTES
        if self._closed.is_set():
            # What is left is shared out among the workers, but never in batches smaller than a
            # full one: a short tail goes in one request, a whole task's files in parallel ones.
            share = math.ceil(self._pending_bytes / max(1, self._link.concurrency))
            budget = min(MAX_BATCH_BYTES, max(BATCH_BYTES, share))
        count, size = 0, 0
        for name in self._pending[:BATCH_FILES]:
            length = self._sizes[name]
            if count and size + length > budget:
                break
            count, size = count + 1, size + length
        batch, self._pending = self._pending[:count], self._pending[count:]
        self._pending_bytes -= size
        for name in batch:
            del self._queued_at[name]
        if self._linger is not None:
            self._linger.cancel()  # timed for a file now taken; `_wake` sets one for the next
            self._linger = None
        self._wake()
        return batch

    def _batch_ready(self) -> bool:
        """Files wait for company while the client still uploads: a batch goes when full, when its
        oldest file waited `LINGER_S`, or once the feed is closed."""
        if not self._pending:
            return False
        if self._closed.is_set() or len(self._pending) >= BATCH_FILES or self._pending_bytes >= BATCH_BYTES:
            return True
        return time.monotonic() - self._queued_at[self._pending[0]] >= LINGER_S

    async def _worker(self) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._send_batch(batch)

    async def _send_batch(self, names: list[str]) -> None:
        paths = [self.directory / n for n in names]
        progress = self.progress
        for attempt in range(BATCH_ATTEMPTS):
            body = MultipartBody([], paths, self._link.limiter, progress)
            self._inflight += 1
            self._link.leftovers.touched(self.node, self.uuid)
            try:
                reply = await self._post(f"/task/new/upload/{self.uuid}", body, {})
                if reply.get("success") is not True:
                    raise ForwardError(f"{self.node.name} upload: no success in reply", answered=True)
                break
            except ForwardError as exc:
                progress.bytes_sent -= body.sent
                if exc.may_have_stored:
                    # Sending the batch again would add copies beside what the node kept of it.
                    raise ForwardError(
                        f"{exc} (batch of {len(names)} files cut off; the node may have kept part of it)"
                    ) from None
                if attempt + 1 == BATCH_ATTEMPTS or exc.unreachable:
                    raise ForwardError(
                        f"{exc} (batch of {len(names)} files, {attempt + 1} attempts)"
                    ) from None
                log.info("Upload batch to %s failed (%s); retrying", self.node.name, exc)
                await asyncio.sleep(BATCH_BACKOFF_S[min(attempt, len(BATCH_BACKOFF_S) - 1)])
            finally:
                self._inflight -= 1
        progress.files_done += len(names)
        progress.bytes_done += sum(self._sizes.pop(n, 0) for n in names)

    async def _stream(self, source: FileStream) -> None:
        """One streamed file; on any failure the file is handed back to the batches (from disk)."""
        body = StreamBody(source, self._link.limiter, self.progress, self._busy)
        try:
            await self._ready.wait()
            self._link.leftovers.touched(self.node, self.uuid)
            reply = await self._post(f"/task/new/upload/{self.uuid}", body, {})
            if reply.get("success") is not True:
                raise ForwardError(f"{self.node.name} upload: no success in reply", answered=True)
            size = os.fstat(source.source.fileno()).st_size
            self._known.add(source.name)
            progress = self.progress
            progress.files_total, progress.bytes_total = progress.files_total + 1, progress.bytes_total + size
            progress.files_done, progress.bytes_done = progress.files_done + 1, progress.bytes_done + size
        except (ForwardError, StreamAborted) as exc:
            self.progress.bytes_sent -= body.sent
            cut = isinstance(exc, StreamAborted) or exc.may_have_stored
            if body.started and cut:
                # The node has part of this file under its name and keeps it: this attempt is over.
                self._spoiled = f"{self.node.name} got part of {source.name} only ({exc})"
                self._spoil.set()
            elif isinstance(exc, ForwardError):
                log.info("Streaming %s to %s failed (%s); sent from disk", source.name, self.node.name, exc)
        finally:
            if body.awaiting_reply:
                self._busy(-1)

    def _stream_done(self, source: FileStream) -> None:
        """Success or not (even cancelled before it ran): unless delivered, the batches take the file."""
        source.dead = source.name not in self._known
        source.close()
        self._streams.pop(source, None)
        if source.dead and source.final is not None:
            self.add([source.final])
        self._more.set()

    async def _watch_spoil(self) -> None:
        await self._spoil.wait()
        raise ForwardError(self._spoiled or "spoiled")

    def _busy(self, delta: int) -> None:
        self._inflight += delta

    async def _post(self, path: str, body: Body | None, headers: dict[str, str]) -> dict[str, Any]:
        return await post_json(self.node, path, body, headers)

    def _check_uuid(self, reply: dict[str, Any]) -> None:
        if reply.get("uuid") != self.uuid:
            raise ForwardError(f"{self.node.name} answered uuid {reply.get('uuid')!r} instead of {self.uuid}")

    async def _report(self) -> None:
        reported = -1
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            if self.progress.bytes_sent != reported:
                reported = self.progress.bytes_sent
                self._say(self.progress.line(self.node))

    async def _watch_stall(self) -> None:
        """Fail the attempt when, with requests in flight all along, too little went out over the window.

        Time spent waiting for the client's next file does not count: only the node can stall us.
        """
        policy = self._link.stall
        step = min(10.0, policy.window_s / 8)
        history: list[tuple[float, int]] = []
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if self._inflight == 0:
                history.clear()
                continue
            history.append((now, self.progress.bytes_sent))
            while len(history) > 1 and now - history[1][0] >= policy.window_s:
                history.pop(0)
            since, before = history[0]
            moved = self.progress.bytes_sent - before
            if now - since >= policy.window_s and moved < policy.min_bytes_s * policy.window_s:
                raise ForwardError(
                    f"{self.node.name}: upload stalled (under {policy.min_bytes_s:g} B/s "
                    f"for {policy.window_s:g} s)"
                )
