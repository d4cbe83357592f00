"""Streaming multipart parsing that writes file parts straight to disk (never buffering whole files).

It reproduces multer's behaviour in NodeODM: a file under any field other than the expected one is an
``Unexpected field`` error, text fields are kept (last value wins), files get NodeODM's safe names.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from clusterodm.nodeodm.messages import UNEXPECTED_FIELD
from clusterodm.nodeodm.names import next_collision_name, sanitize_upload_name


class FormError(Exception):
    """The request body is rejected; the message is the NodeODM error text."""


@dataclass
class StoredFile:
    original_name: str
    path: Path
    size: int = 0


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[StoredFile] = field(default_factory=list)


def open_unique(directory: Path, filename: str) -> tuple[Path, BinaryIO]:
    """Create ``filename`` in ``directory`` atomically, appending ``_`` before the extension on collision."""
    name = sanitize_upload_name(filename)
    while True:
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            name = next_collision_name(name)
            continue
        return path, os.fdopen(fd, "wb")


class _Collector:
    """Callback target for python-multipart; keeps only the current part's state."""

    def __init__(self, file_field: str | None, directory: Path | None) -> None:
        self.file_field = file_field
        self.directory = directory
        self.form = ParsedForm()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field_name = ""
        self._text = bytearray()
        self._out: BinaryIO | None = None
        self._current: StoredFile | None = None

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        self._field_name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in params:
            return
        if self.file_field is None or self._field_name != self.file_field or self.directory is None:
            raise FormError(UNEXPECTED_FIELD)
        original = params[b"filename"].decode("utf-8", "replace")
        path, self._out = open_unique(self.directory, original)
        self._current = StoredFile(original, path)
        self.form.files.append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None and self._current is not None:
            self._out.write(data[start:end])
            self._current.size += end - start
        else:
            self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self._current = None
        else:
            self.form.fields[self._field_name] = self._text.decode("utf-8", "replace")

    def abort(self) -> None:
        """Close and delete everything written so far (multer removes files of a failed request)."""
        if self._out is not None:
            self._out.close()
            self._out = None
        for stored in self.form.files:
            stored.path.unlink(missing_ok=True)
        self.form.files.clear()


def is_multipart(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


async def parse_form(
    content_type: str,
    stream: AsyncIterator[bytes],
    *,
    file_field: str | None = None,
    directory: Path | None = None,
) -> ParsedForm:
    """Parse a multipart body; files under ``file_field`` are written to ``directory``.

    A non-multipart body yields an empty form (multer ignores it), after draining the stream.
    """
    if not is_multipart(content_type):
        async for _ in stream:
            pass
        return ParsedForm()
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("Multipart: Boundary not found")
    collector = _Collector(file_field, directory)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except FormError:
        collector.abort()
        # Drain the rest so the client gets the answer instead of a reset connection.
        async for _ in stream:
            pass
        raise
    except Exception as exc:
        collector.abort()
        raise FormError(f"Multipart: {exc}") from exc
    return collector.form
