"""The streaming multipart parser shared by the proxy and the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clusterodm.nodeodm.formparse import PARTIAL_DIR, FormError, parse_form

BOUNDARY = "xYzZy"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, body: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + body + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def parse(data: bytes, directory: Path, **kwargs: object) -> object:
    return asyncio.run(
        parse_form(CONTENT_TYPE, chunks(data), file_field="images", directory=directory, **kwargs)  # type: ignore[arg-type]
    )


def stored(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != PARTIAL_DIR)


def test_files_are_renamed_like_nodeodm_and_fields_kept(tmp_path: Path) -> None:
    form = parse(
        body(
            part("name", b"survey"),
            part("images", b"a" * 100, "a.jpg"),
            part("images", b"b" * 50, "a.jpg"),
            part("images", b"{}", "body.json"),
            part("images", b"x", "../../etc/passwd"),
        ),
        tmp_path,
    )
    assert form.fields == {"name": "survey"}  # type: ignore[attr-defined]
    assert stored(tmp_path) == ["_body.json", "a.jpg", "a_.jpg", "passwd"]  # no path escapes tmp_path
    assert (tmp_path / "a.jpg").read_bytes() == b"a" * 100 and (tmp_path / "a_.jpg").read_bytes() == b"b" * 50
    assert not any((tmp_path / PARTIAL_DIR).iterdir())


@pytest.mark.parametrize(("keep", "expected"), [(True, ["a.jpg"]), (False, [])])
def test_unexpected_field_drops_the_partial_file_and_maybe_the_completed_ones(
    tmp_path: Path, keep: bool, expected: list[str]
) -> None:
    data = body(part("images", b"a" * 10, "a.jpg"), part("photos", b"b" * 10_000, "b.jpg"))
    with pytest.raises(FormError, match="^Unexpected field$"):
        parse(data, tmp_path, keep_completed_on_error=keep)
    assert stored(tmp_path) == expected
    assert not any((tmp_path / PARTIAL_DIR).iterdir())


def test_body_cut_mid_file_leaves_no_partial_file(tmp_path: Path) -> None:
    data = body(part("images", b"a" * 10, "a.jpg"), part("images", b"b" * 10_000, "b.jpg"))
    with pytest.raises(FormError, match="Unexpected end of form"):
        parse(data[: len(data) // 2], tmp_path)
    assert stored(tmp_path) == ["a.jpg"]
    assert not any((tmp_path / PARTIAL_DIR).iterdir())
