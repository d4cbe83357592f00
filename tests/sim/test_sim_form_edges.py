"""How NodeODM 2.2.4 reads task-creation forms at the edges (spec 9.4, 9.5), reproduced by the simulator.

Each test's docstring states what the real node does; the simulator must do the same so that the
proxy tests built on it catch a proxy that is kinder or stricter.
"""

from __future__ import annotations

import uuid as uuid_lib

import httpx

from support.multipart import multipart
from support.simnode import SimNode

NEED_FILE = {"error": "Need at least 1 file.", "noRetry": True}


def post_parts(url: str, parts: list[tuple[str, str | None, bytes]]) -> dict:
    body, content_type = multipart(parts)
    return httpx.post(url, content=body, headers={"Content-Type": content_type}).json()


def uploaded(sim: SimNode, uuid: str) -> list[str]:
    """Names in the node's upload folder (its private staging folder aside)."""
    return sorted(p.name for p in (sim.data_dir / "tmp" / uuid).iterdir() if p.name != ".partial")


def init(sim: SimNode) -> str:
    uuid: str = httpx.post(f"{sim.url}/task/new/init", files={"name": (None, "edges")}).json()["uuid"]
    return uuid


def test_empty_filename_parts_are_ignored(sim: SimNode) -> None:
    """NodeODM (multer) drops a file part with `filename=""` unread, before its field name is even
    checked: an upload of only such parts answers `Need at least 1 file.` with `noRetry`, `/task/new`
    answers `Need at least 1 file or a zip file url.`, and init (which refuses files) accepts one."""
    uuid = init(sim)
    upload = f"{sim.url}/task/new/upload/{uuid}"
    assert post_parts(upload, [("images", "", b"x" * 5000)]) == NEED_FILE
    assert post_parts(upload, [("other", "", b"x")]) == NEED_FILE
    assert uploaded(sim, uuid) == ["body.json"]
    assert post_parts(f"{sim.url}/task/new", [("images", "", b"x")]) == {
        "error": "Need at least 1 file or a zip file url."
    }
    assert "uuid" in post_parts(f"{sim.url}/task/new/init", [("images", "", b"x"), ("name", None, b"n")])


def test_zero_byte_file_is_accepted_and_counted(sim: SimNode) -> None:
    """NodeODM stores a 0-byte upload like any other file and counts it in imagesCount."""
    uuid = init(sim)
    upload = f"{sim.url}/task/new/upload/{uuid}"
    assert post_parts(upload, [("images", "empty.jpg", b"")]) == {"success": True}
    assert post_parts(upload, [("images", "b.jpg", b"b" * 100)]) == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 2
    assert (sim.data_dir / "tasks" / uuid / "images" / "empty.jpg").stat().st_size == 0


def test_same_name_parts(sim: SimNode) -> None:
    """Two parts named `a.jpg` in ONE request end as one file, the later write winning (multer gives
    both the same name); a later request's `a.jpg` becomes `a_.jpg`."""
    uuid = init(sim)
    upload = f"{sim.url}/task/new/upload/{uuid}"
    first = [("images", "a.jpg", b"first" * 100), ("images", "a.jpg", b"second" * 100)]
    assert post_parts(upload, first) == {"success": True}
    assert post_parts(upload, [("images", "a.jpg", b"third" * 100)]) == {"success": True}
    tmp = sim.data_dir / "tmp" / uuid
    assert uploaded(sim, uuid) == ["a.jpg", "a_.jpg", "body.json"]
    assert (tmp / "a.jpg").read_bytes() == b"second" * 100
    assert (tmp / "a_.jpg").read_bytes() == b"third" * 100
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    assert httpx.get(f"{sim.url}/task/{uuid}/info").json()["imagesCount"] == 2


def test_empty_set_uuid_header_is_ignored(sim: SimNode) -> None:
    """NodeODM tests `set-uuid` for truthiness: an empty header gets a random uuid, not an error."""
    reply = httpx.post(f"{sim.url}/task/new/init", headers={"set-uuid": ""}, files={"name": (None, "u")})
    assert uuid_lib.UUID(reply.json()["uuid"]).version == 4
    body, content_type = multipart([("images", "a.jpg", b"a" * 10)])
    headers = {"Content-Type": content_type, "set-uuid": ""}
    single = httpx.post(f"{sim.url}/task/new", content=body, headers=headers)
    assert uuid_lib.UUID(single.json()["uuid"]).version == 4


def test_init_reads_multipart_only(sim: SimNode) -> None:
    """`/task/new/init` parses multipart bodies only: urlencoded or JSON fields (even bad options) are
    ignored, so the task ends up without a name."""
    for reply in (
        httpx.post(f"{sim.url}/task/new/init", data={"name": "kept?", "options": "notjson"}),
        httpx.post(f"{sim.url}/task/new/init", json={"name": "kept?", "options": "notjson"}),
    ):
        uuid = reply.json()["uuid"]
        upload = f"{sim.url}/task/new/upload/{uuid}"
        assert post_parts(upload, [("images", "a.jpg", b"a")]) == {"success": True}
        assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
        assert "name" not in httpx.get(f"{sim.url}/task/{uuid}/info").json()


def test_empty_options_fail_at_commit(sim: SimNode) -> None:
    """`options=""` passes init (NodeODM only checks a non-empty value there); commit parses it and
    answers `Unexpected end of JSON input`, and the uploads are gone."""
    reply = httpx.post(f"{sim.url}/task/new/init", files={"options": (None, "")})
    uuid = reply.json()["uuid"]
    assert post_parts(f"{sim.url}/task/new/upload/{uuid}", [("images", "a.jpg", b"a")]) == {"success": True}
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"error": "Unexpected end of JSON input"}
    assert not (sim.data_dir / "tmp" / uuid).exists()
    assert httpx.post(f"{sim.url}/task/new/commit/{uuid}").json() == {"error": "Invalid uuid (not found)"}
