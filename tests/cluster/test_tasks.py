"""TaskTable: durable local entries, copy-on-read info views, JS-style output slicing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clusterodm.cluster.store_sqlite import SqliteStore
from clusterodm.cluster.tasks import LocalTask, TaskTable
from support.aio import async_test

UUID = "5480a1e2-0000-4000-8000-000000000001"


def make_task(
    owner_id: int = 1, code: int = 20, output: list[str] | None = None, **info_fields: int
) -> LocalTask:
    info = {
        "uuid": UUID,
        "name": "field-3",
        "dateCreated": 1_000_000,
        "status": {"code": code},
        "options": [],
        "imagesCount": 2,
        **info_fields,
    }
    lines = ["Launching... please wait! This can take a few minutes."] if output is None else output
    return LocalTask(UUID, owner_id, info, lines)


@async_test
async def test_info_view_is_a_copy_and_never_mutates(tmp_path: Path) -> None:
    table = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"))
    await table.put(make_task())
    view = table.info_view(UUID, "0", now_ms=1_001_266)
    assert view is not None
    assert view["output"] == ["Launching... please wait! This can take a few minutes."]
    assert view["processingTime"] == 1266  # synthesised while RUNNING
    view["status"]["code"] = 30
    view["options"].append("x")
    plain = table.info_view(UUID, None, now_ms=1_001_266)
    assert plain is not None
    assert "output" not in plain  # spec 8.3: with_output must not stick to the entry
    assert plain["status"] == {"code": 20} and plain["options"] == []
    assert "processingTime" not in table.get(UUID).info  # type: ignore[union-attr]


@async_test
async def test_with_output_js_coercion_and_negatives(tmp_path: Path) -> None:
    table = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"))
    await table.put(make_task(output=["a", "b", "c", "d"]))

    def out(value: str) -> list[str]:
        view = table.info_view(UUID, value)
        assert view is not None
        return view["output"]

    assert out("2") == ["c", "d"]
    assert out("-1") == ["d"]
    assert out("-3xyz") == ["b", "c", "d"]
    assert out("garbage") == ["a", "b", "c", "d"]
    assert out("99") == []
    assert table.output_view(UUID, "-2") == ["c", "d"]


@async_test
async def test_processing_time_when_not_running(tmp_path: Path) -> None:
    table = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"))
    await table.put(make_task(code=20))
    await table.set_status(
        UUID, 30, "Failed to forward task to processing node after 5 attempts. Try again later."
    )
    view = table.info_view(UUID)
    assert view is not None and view["processingTime"] == -1
    assert view["status"]["errorMessage"].startswith("Failed to forward")
    await table.put(make_task(code=30, processingTime=41235))  # a final value from the node stays
    assert table.info_view(UUID)["processingTime"] == 41235  # type: ignore[index]
    await table.set_status(UUID, 50)
    assert table.info_view(UUID)["status"] == {"code": 50}  # type: ignore[index]


@async_test
async def test_ownership_and_durability(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    table = await TaskTable.open(await SqliteStore.open(path))
    await table.put(make_task(owner_id=7))
    assert table.get(UUID, 8) is None
    assert table.info_view(UUID, None, owner_id=8) is None
    assert table.get(UUID, 7) is not None
    assert table.for_owner(7) == [UUID] and table.for_owner(0) == []
    table.append_output(UUID, "line 2")  # batched...
    await table.flush()  # ...and written by a flush (timed, periodic, or at shutdown)
    reopened = await TaskTable.open(await SqliteStore.open(path))
    task = reopened.get(UUID)
    assert task is not None and task.output[-1] == "line 2" and task.owner_id == 7
    assert await reopened.remove(UUID) and not await reopened.remove(UUID)
    assert UUID not in await TaskTable.open(await SqliteStore.open(path))


@async_test
async def test_batched_appends_flush_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    table = await TaskTable.open(await SqliteStore.open(path))
    await table.put(make_task())
    reader = await SqliteStore.open(path)

    async def scenario() -> None:
        for i in range(50):
            table.append_output(UUID, f"line {i}")
        (stored,) = await reader.load_tasks()
        assert len(stored.output) == 1  # batched, not yet written
        for _ in range(300):  # poll for up to 3 s
            (stored,) = await reader.load_tasks()
            if len(stored.output) == 51:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("output appends were not flushed within a second")

    await scenario()


@async_test
async def test_prune_keeps_recently_read_entries(tmp_path: Path) -> None:
    clock = [1_000]
    table = await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"), clock=lambda: clock[0])
    await table.put(make_task())
    other = make_task()
    other.uuid = "5480a1e2-0000-4000-8000-000000000002"
    await table.put(other)
    clock[0] = 1_000 + 10_000
    table.get(UUID)  # a read keeps it alive
    assert await table.prune(max_age_ms=5_000) == [other.uuid]
    await table.flush()
    assert len(await TaskTable.open(await SqliteStore.open(tmp_path / "db.sqlite3"))) == 1


@async_test
async def test_running_count_follows_every_change(tmp_path: Path) -> None:
    """Forwards in progress per owner (what `maxConcurrentTasks` counts locally), without a scan."""
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    table = await TaskTable.open(store)
    await table.put(make_task(owner_id=1))
    assert table.running_count(1) == 1 and table.running_count(2) == 0
    await table.set_status(UUID, 30, "failed")
    assert table.running_count(1) == 0
    await table.set_status(UUID, 20)
    assert table.running_count(1) == 1
    await table.put(make_task(owner_id=2))  # the same uuid under another owner
    assert table.running_count(1) == 0 and table.running_count(2) == 1
    assert (await TaskTable.open(store)).running_count(2) == 1  # rebuilt from the store
    await table.remove(UUID)
    assert table.running_count(2) == 0
    await table.put(make_task(owner_id=3))
    assert await table.prune(max_age_ms=0, now_ms=10**15) == [UUID] and table.running_count(3) == 0
