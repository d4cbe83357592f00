"""What failed attempts may have left on nodes, cleared before a node gets the same task again.

A NodeODM node writes each upload part under its name as it arrives and keeps it when the request
ends early, the complete parts and the cut-off one alike; it has no way to delete one uploaded file
or an uncommitted upload, and an init with the same `set-uuid` reuses the folder (spec 9.1). So
once an attempt has sent any upload of task U to node N and not committed it there, N's `tmp/U/`
may hold cut-off or extra files, and sending U to N again would add to them. Before that, the
folder is cleared the only way NodeODM offers: init U again with neutral fields, commit (NodeODM
moves the folder into a task, or deletes it when it holds no file) and remove that task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from clusterodm.cluster.nodeclient import NodeError
from clusterodm.pipeline.transfer import (
    ForwardError,
    MultipartBody,
    Progress,
    RateLimiter,
    UrlEncoded,
    post_json,
)

if TYPE_CHECKING:
    from clusterodm.cluster.node import Node
    from clusterodm.cluster.nodeclient import NodeClient

log = logging.getLogger("clusterodm.pipeline")

DISCARD_NAME = "clusterodm: discarded partial upload"
"""The name of the throwaway task that carries a cleared folder away (never routed to)."""
TASK_WAIT_S = 30.0
"""How long NodeODM may take to list a committed task (it moves the files first)."""
TASK_POLL_S = 0.1

Key = tuple[int, str]


class Leftovers:
    """Which (node, task) pairs may hold upload leftovers, and the clearing of them."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client
        self._dirty: set[Key] = set()
        self._unknown: set[str] = set()
        """Tasks whose history is unknown (resumed after a restart): every node is suspect."""
        self._cleared: set[Key] = set()
        """Pairs of unknown tasks cleared since (or committed on)."""
        self._clearing: dict[Key, asyncio.Task[None]] = {}

    def touched(self, node: Node, uuid: str) -> None:
        """An upload of `uuid` is about to go to `node`: until it is committed there, the node may
        keep files of it."""
        self._dirty.add((node.id, uuid))

    def committed(self, node: Node, uuid: str) -> None:
        self._dirty.discard((node.id, uuid))
        self._cleared.add((node.id, uuid))

    def suspect(self, uuid: str) -> None:
        """Nothing is known of what earlier runs sent of `uuid`: clear each node before using it."""
        self._unknown.add(uuid)

    def forget(self, uuid: str) -> None:
        """The task is handed over or gone: stop tracking it (a node's own cleanup takes the rest)."""
        self._unknown.discard(uuid)
        self._dirty = {k for k in self._dirty if k[1] != uuid}
        self._cleared = {k for k in self._cleared if k[1] != uuid}

    def holds(self, node: Node, uuid: str) -> bool:
        key = (node.id, uuid)
        return key in self._dirty or (uuid in self._unknown and key not in self._cleared)

    async def clear(self, node: Node, uuid: str) -> bool:
        """Make sure `node` holds nothing of `uuid`'s upload; ForwardError if that cannot be done.
        True when the node may have held something (it was cleared): `check_count` after commit."""
        if not self.holds(node, uuid):
            return False
        key = (node.id, uuid)
        job = self._clearing.get(key)
        if job is None:
            job = asyncio.get_running_loop().create_task(self._discard(node, uuid))
            self._clearing[key] = job
            job.add_done_callback(
                lambda done: self._clearing.pop(key, None) if self._clearing.get(key) is done else None
            )
        await asyncio.shield(job)
        self._dirty.discard(key)
        self._cleared.add(key)
        return True

    async def check_count(self, node: Node, uuid: str, sent: int) -> None:
        """After the commit of an attempt that started by clearing `node`: ForwardError if the task
        there has more files than were sent.

        A busy node can get to the bytes of a cut-off request after the clearing ran, and then
        writes its parts into the next upload of the same task (it keeps whatever arrives). NodeODM
        counts every file of a task at commit (spec 9.2), so a count above what was sent means such
        late leftovers: the task is removed there, the attempt fails, and the node is cleared again
        before the next one (the pair stays marked as touched until `committed`).
        """
        deadline = time.monotonic() + TASK_WAIT_S
        while True:
            try:
                info = await self._client.task_info(node, uuid)
                break
            except NodeError:
                if time.monotonic() > deadline:
                    raise ForwardError(f"{node.name} never listed the committed task") from None
                await asyncio.sleep(TASK_POLL_S)
        count = info.get("imagesCount")
        if isinstance(count, int) and count > sent:
            await self._remove(node, uuid)  # never taken for the task by a later `_already_there`
            raise ForwardError(
                f"{node.name} counts {count} files in the task but {sent} were sent: "
                "a cut-off upload request reached it late"
            )

    async def _discard(self, node: Node, uuid: str) -> None:
        started = time.monotonic()
        try:
            await self._init(node, uuid)
            try:
                await post_json(node, f"/task/new/commit/{uuid}", None, {})
            except ForwardError as exc:
                if not exc.answered:
                    raise
                # NodeODM refused (no file: "Need at least 1 file.") and deleted the folder.
                log.info("Cleared the empty upload folder of %s on %s", uuid, node.name)
                return
            await self._wait_listed(node, uuid)
            await self._remove(node, uuid)
        except ForwardError as exc:
            raise ForwardError(
                f"{node.name} may still hold a cut-off upload of this task and could not clear it ({exc})"
            ) from None
        log.info(
            "Cleared what failed uploads left of %s on %s (%.1f s)",
            uuid,
            node.name,
            time.monotonic() - started,
        )

    async def _init(self, node: Node, uuid: str) -> None:
        """Init `uuid` with neutral fields (no webhook, no options); a task of that uuid is removed first."""
        for attempt in range(2):
            body = MultipartBody(
                [("name", DISCARD_NAME), ("options", "[]")], [], RateLimiter(0), Progress(0, 0)
            )
            try:
                await post_json(node, "/task/new/init", body, {"set-uuid": uuid})
                return
            except ForwardError as exc:
                # "Invalid set-uuid": an earlier commit did reach the node; that task goes first.
                if not exc.answered or attempt:
                    raise
                await self._remove(node, uuid)

    async def _wait_listed(self, node: Node, uuid: str) -> None:
        deadline = time.monotonic() + TASK_WAIT_S
        while not await self._listed(node, uuid):
            if time.monotonic() > deadline:
                raise ForwardError(f"the committed leftovers never showed up as a task in {TASK_WAIT_S:g} s")
            await asyncio.sleep(TASK_POLL_S)

    async def _listed(self, node: Node, uuid: str) -> bool:
        try:
            await self._client.task_info(node, uuid)
        except NodeError:
            return False
        return True

    async def _remove(self, node: Node, uuid: str) -> None:
        try:
            await post_json(node, "/task/remove", UrlEncoded({"uuid": uuid}), {})
        except ForwardError as exc:
            # A failed attempt's own `forget()` may have removed it a moment before: gone is gone.
            if not exc.answered or await self._listed(node, uuid):
                raise
