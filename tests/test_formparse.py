"""parse_form (proxy and simulator): files straight to disk, errors as the API's messages, no leftovers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clusterodm.nodeodm.formparse import PARTIAL_DIR, FormError, ParsedForm, parse_form
from clusterodm.nodeodm.messages import UNEXPECTED_FIELD

B = "xYz0123boundary"
CT = f"multipart/form-data; boundary={B}"


def field(name: str, value: bytes) -> bytes:
    return f'--{B}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"


def file(name: str, filename: str, data: bytes) -> bytes:
    head = f'--{B}\r\ncontent-disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return (head + "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"


END = f"--{B}--\r\n".encode()


async def pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def parse(body: bytes, directory: Path, size: int = 5, content_type: str = CT) -> ParsedForm:
    coro = parse_form(content_type, pieces(body, size), file_field="images", directory=directory)
    return asyncio.run(asyncio.wait_for(coro, 10))


def stored(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != PARTIAL_DIR)


def partials(directory: Path) -> list[Path]:
    folder = directory / PARTIAL_DIR
    return list(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("size", [1, 7, 1 << 20])
def test_fields_and_files_in_any_chunking(tmp_path: Path, size: int) -> None:
    body = field("name", b"my task") + file("images", "a.JPG", b"\r\n--" + B.encode()[:-1])
    body += file("images", "a.JPG", b"second") + file("images", "../../body.json", b"{}") + END
    form = parse(body, tmp_path, size)
    assert form.fields == {"name": "my task"}
    assert form.files == ["a.JPG", "a_.JPG", "_body.json"]  # NodeODM's collision and name rules
    assert (tmp_path / "a.JPG").read_bytes() == b"\r\n--" + B.encode()[:-1]
    assert (tmp_path / "a_.JPG").read_bytes() == b"second"
    assert partials(tmp_path) == []


def test_truncated_file_is_an_error_and_leaves_no_partial(tmp_path: Path) -> None:
    body = file("images", "ok.jpg", b"whole") + file("images", "cut.jpg", b"x" * 1000)[:-200]
    with pytest.raises(FormError, match="Multipart: Unexpected end of form"):
        parse(body, tmp_path)
    assert stored(tmp_path) == ["ok.jpg"]  # completed files stay (the proxy counts them)
    assert partials(tmp_path) == []


def test_garbage_after_a_boundary_is_a_multipart_error(tmp_path: Path) -> None:
    body = file("images", "a.jpg", b"data") + f"--{B}oops\r\n".encode()
    with pytest.raises(FormError, match="^Multipart: malformed boundary line"):
        parse(body, tmp_path, size=1 << 20)
    assert stored(tmp_path) == ["a.jpg"]  # its closing boundary came before the fault
    assert partials(tmp_path) == []


def test_file_under_another_field_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(FormError) as refused:
        parse(file("photos", "a.jpg", b"x") + END, tmp_path)
    assert str(refused.value) == UNEXPECTED_FIELD
    assert stored(tmp_path) == []


def test_missing_or_oversized_boundary(tmp_path: Path) -> None:
    with pytest.raises(FormError, match="Boundary not found"):
        parse(END, tmp_path, content_type="multipart/form-data")
    with pytest.raises(FormError, match="^Multipart: boundary must be"):
        parse(END, tmp_path, content_type="multipart/form-data; boundary=" + "b" * 201)


def test_oversized_text_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FormError, match="Field options is too large"):
        parse(field("options", b"[" * ((1 << 20) + 1)) + END, tmp_path, size=1 << 16)


def test_not_multipart_is_an_empty_form(tmp_path: Path) -> None:
    assert parse(b"name=x", tmp_path, content_type="application/x-www-form-urlencoded") == ParsedForm()


class Disconnected(Exception):
    """Stands for the server's "client went away" (starlette's ClientDisconnect)."""


async def then_disconnect(body: bytes) -> AsyncIterator[bytes]:
    yield body
    raise Disconnected


@pytest.mark.parametrize("keep", [False, True])
def test_disconnect_mid_file_discards_or_keeps_as_asked(tmp_path: Path, keep: bool) -> None:
    """The proxy drops the cut-off file; the simulator keeps it under its name with the request's
    complete files, as NodeODM's multer does (`keep_on_disconnect`)."""
    body = file("images", "done.jpg", b"complete") + file("images", "cut.jpg", b"half of it")[:-7]
    coro = parse_form(
        CT,
        then_disconnect(body),
        file_field="images",
        directory=tmp_path,
        keep_completed_on_error=False,
        keep_on_disconnect=keep,
    )
    with pytest.raises(FormError):
        asyncio.run(asyncio.wait_for(coro, 10))
    if keep:
        assert stored(tmp_path) == ["cut.jpg", "done.jpg"]
        # What had arrived, but for a tail the scanner holds back as a possible boundary.
        kept = (tmp_path / "cut.jpg").read_bytes()
        assert kept and b"half o".startswith(kept)
    else:
        assert stored(tmp_path) == []
    assert partials(tmp_path) == []


def test_staging_folder_outside_the_uploads(tmp_path: Path) -> None:
    """With `staging`, nothing but the complete files is ever in `directory`."""
    uploads, staging = tmp_path / "files", tmp_path / "partial"
    uploads.mkdir()
    body = file("images", ".partial", b"a client file of that name") + END
    coro = parse_form(CT, pieces(body, 3), file_field="images", directory=uploads, staging=staging)
    form = asyncio.run(asyncio.wait_for(coro, 10))
    assert form.files == [".partial"]
    assert (uploads / ".partial").read_bytes() == b"a client file of that name"
    assert list(staging.iterdir()) == []
