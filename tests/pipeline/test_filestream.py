"""FileStream's wake-up: a sender waiting for more of a growing file wakes as soon as it is there."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from clusterodm.pipeline.streaming import WAKE_BYTES, FileStream


def test_sender_wakes_once_its_missing_bytes_arrived(tmp_path: Path) -> None:
    """It looked at 3/4 of WAKE_BYTES: the last quarter must wake it, not a whole WAKE_BYTES more."""
    partial = tmp_path / "part"
    partial.write_bytes(b"")

    async def scenario() -> int:
        stream = FileStream(partial, "a.jpg")
        first = (WAKE_BYTES * 3) // 4
        with partial.open("ab") as out:
            out.write(os.urandom(first))
            stream.poke(first)
            sender = asyncio.create_task(stream.next_range(0))
            await asyncio.sleep(0)  # the sender looks now and waits: not enough yet
            assert not sender.done()
            rest = WAKE_BYTES - first
            out.write(os.urandom(rest))
            out.flush()
            stream.poke(rest)
        try:
            return await asyncio.wait_for(sender, 2)
        finally:
            stream.close()

    assert asyncio.run(scenario()) == WAKE_BYTES


def test_completion_wakes_a_sender_with_what_is_left(tmp_path: Path) -> None:
    partial = tmp_path / "part"
    partial.write_bytes(b"x" * 10)

    async def scenario() -> tuple[int, int]:
        stream = FileStream(partial, "a.jpg")
        sender = asyncio.create_task(stream.next_range(0))
        await asyncio.sleep(0)
        assert not sender.done()
        stream.complete("a.jpg")
        available = await asyncio.wait_for(sender, 2)
        after = await asyncio.wait_for(stream.next_range(available), 2)
        stream.close()
        return available, after

    assert asyncio.run(scenario()) == (10, 0)
