"""Streaming multipart parsing for task creation (proxy and simulator): files go straight to disk.

Each file is written to a private name in a staging folder (`.partial/` inside the task folder, or
the caller's `staging`) and only linked under its final (sanitized, de-duplicated) name once its
part ended, so a client that disconnects mid-file, a
limit refusal or a crash leaves no half file among the uploads (the proxy's rule). The simulator
asks for NodeODM's rule instead (`keep_on_disconnect`): multer writes each part under its name as it
arrives and keeps it when the connection ends, cut off where it ended. Text fields are small and kept.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import parse_options_header

from clusterodm._native import MultipartScanner
from clusterodm.nodeodm.messages import UNEXPECTED_FIELD
from clusterodm.nodeodm.names import next_collision_name, sanitize_upload_name

PARTIAL_DIR = ".partial"
MAX_FIELD_BYTES = 1 << 20
"""Text fields (options, outputs...) are small; a bigger one is a client error, not something to keep."""
DRAIN_LIMIT_BYTES = 32 << 20
"""After a refusal, read at most this much more so the client can read the answer, then give up."""


HEADERS, DATA, HELD, PART_END, ERROR = (  # the scanner's event kinds
    MultipartScanner.HEADERS,
    MultipartScanner.DATA,
    MultipartScanner.HELD,
    MultipartScanner.PART_END,
    MultipartScanner.ERROR,
)


class FormError(Exception):
    """The body is refused; the message is the JSON error text for the client."""


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    """Final names of the stored files, in completion order."""
    repeats: list[str] = field(default_factory=list)
    """Files dropped as repeats of one already stored (see `RepeatCheck`), by the stored name."""


FileGate = Callable[[str], str | None]
"""Called with a file's sanitized name before it is written; returns an error message to refuse it."""
FileStart = Callable[[Path, str], None]
"""Called when a file starts being written: its staging path (it grows) and its sanitized name."""
Reuse = Callable[[Path], int | None]
"""Places an empty file at the given staging path and returns it open for writing, or None (then
a new file is created there)."""
RepeatCheck = Callable[[Path, str], Awaitable[str | None]]
"""Awaited when a file is complete, with its staging path and sanitized name: returns the name of
a stored file it repeats (it is then dropped, not stored), or None; may raise FormError. Async, so
that comparing a big file is done off the event loop (`asyncio.to_thread`)."""


def link_unique(source: Path, directory: Path, filename: str) -> str:
    """Give `source` its final name in `directory` (NodeODM's `_` before the extension on collision)."""
    name = sanitize_upload_name(filename)
    while True:
        try:
            os.link(source, directory / name)
        except FileExistsError:
            name = next_collision_name(name)
            continue
        source.unlink()
        return name


class _Collector:
    """Acts on the scanner's events; holds only the current part's state."""

    def __init__(
        self,
        file_field: str | None,
        directory: Path | None,
        gate: FileGate | None,
        on_file_start: FileStart | None = None,
        repeat_of: RepeatCheck | None = None,
        replace_same_name: bool = False,
        staging: Path | None = None,
        reuse: Reuse | None = None,
    ) -> None:
        self.file_field = file_field
        self.reuse = reuse
        self.directory = directory
        self.gate = gate
        self.on_file_start = on_file_start
        self.repeat_of = repeat_of
        self.staging = staging
        self.form = ParsedForm()
        self._field_name = ""
        self._filename = ""
        self._text = bytearray()
        self._fd: int | None = None
        self._partial: Path | None = None
        self._skipping = False
        self.replace_same_name = replace_same_name
        self._stored_as: dict[str, str] = {}
        """Sanitized name asked for -> name stored, for the files of this request."""

    def start_part(self, raw_headers: bytes) -> None:
        self._text = bytearray()
        disposition = b""
        for line in raw_headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-disposition":
                disposition = value.strip()
        _, params = parse_options_header(disposition)
        self._field_name = params.get(b"name", b"").decode("utf-8", "replace")
        self._skipping = params.get(b"filename") == b""
        if b"filename" not in params or self._skipping:
            return  # a text field, or multer's "no file chosen" part (filename=""): dropped unread
        if self.file_field is None or self._field_name != self.file_field or self.directory is None:
            raise FormError(UNEXPECTED_FIELD)
        self._filename = params[b"filename"].decode("utf-8", "replace")
        if self.gate is not None:
            refusal = self.gate(sanitize_upload_name(self._filename))
            if refusal is not None:
                raise FormError(refusal)
        partial_dir = self.staging or self.directory / PARTIAL_DIR
        partial_dir.mkdir(exist_ok=True)
        self._partial = partial_dir / secrets.token_hex(8)
        fd = self.reuse(self._partial) if self.reuse is not None else None
        self._fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666) if fd is None else fd
        if self.on_file_start is not None:
            self.on_file_start(self._partial, sanitize_upload_name(self._filename))

    def data(self, data: memoryview | bytes) -> None:
        if self._skipping:
            return
        if self._fd is not None:
            while data:
                data = data[os.write(self._fd, data) :]
            return
        if len(self._text) + len(data) > MAX_FIELD_BYTES:
            raise FormError(f"Field {self._field_name} is too large (more than {MAX_FIELD_BYTES} bytes).")
        self._text += data

    async def end_part(self) -> None:
        if self._skipping:
            self._skipping = False
            return
        if self._fd is None or self._partial is None or self.directory is None:
            self.form.fields[self._field_name] = self._text.decode("utf-8", "replace")
            return
        os.close(self._fd)
        self._fd = None
        requested = sanitize_upload_name(self._filename)
        repeated = await self.repeat_of(self._partial, requested) if self.repeat_of else None
        if repeated is not None:
            self._partial.unlink()
            self.form.repeats.append(repeated)
        else:
            self._store(self._partial, self.directory, requested)
        self._partial = None

    def _store(self, partial: Path, directory: Path, requested: str) -> None:
        if self.replace_same_name and requested in self._stored_as:
            # NodeODM (multer) names both parts alike and the later write wins: one file, not a_.jpg.
            os.replace(partial, directory / self._stored_as[requested])
        else:
            stored = link_unique(partial, directory, self._filename)
            self._stored_as[requested] = stored
            self.form.files.append(stored)

    def keep_current(self) -> None:
        """Store the file being written as it is, cut off (NodeODM keeps what multer wrote)."""
        if self._fd is None or self._partial is None or self.directory is None:
            return
        os.close(self._fd)
        self._fd = None
        try:
            self._store(self._partial, self.directory, sanitize_upload_name(self._filename))
        except OSError:  # the folder went meanwhile (committed and moved): nothing to keep it in
            self._partial.unlink(missing_ok=True)
        self._partial = None

    def discard_current(self, *, all_files: bool = False) -> None:
        """Drop the file being written (the request ended or was refused mid-file), or all of them."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
            self._partial = None
        if all_files and self.directory is not None:
            for name in self.form.files:
                (self.directory / name).unlink(missing_ok=True)
            self.form.files.clear()

    @property
    def writing(self) -> bool:
        return self._fd is not None


def is_multipart(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


async def drain(stream: AsyncIterator[bytes], limit: int = DRAIN_LIMIT_BYTES) -> None:
    """Read (and drop) what is left of a refused body, up to `limit` bytes."""
    seen = 0
    try:
        async for chunk in stream:
            seen += len(chunk)
            if seen > limit:
                return
    except Exception:  # the client went away: nothing to answer anyway
        return


async def parse_form(
    content_type: str,
    stream: AsyncIterator[bytes],
    *,
    file_field: str | None = None,
    directory: Path | None = None,
    gate: FileGate | None = None,
    on_file: Callable[[str], None] | None = None,
    on_file_start: FileStart | None = None,
    repeat_of: RepeatCheck | None = None,
    keep_completed_on_error: bool = True,
    replace_same_name: bool = False,
    keep_on_disconnect: bool = False,
    staging: Path | None = None,
    reuse: Reuse | None = None,
) -> ParsedForm:
    """Parse a multipart body, storing files of `file_field` in `directory` as they stream in.

        On any error (refusal, malformed body, client disconnect) the file being written is deleted;
        files completed before stay when `keep_completed_on_error` (the proxy counts them in the
        upload session), else they go too (NodeODM's multer drops a failed request's files).
        A non-multipart body counts as an empty form. `on_file_start` lets a caller follow a file
        while it is still arriving (`on_file` then gives its final name); `repeat_of` lets it drop a
        complete file that repeats one it already has. A part with `filename=""` is dropped unread, as
        multer drops it. With `replace_same_name`, a file named like an earlier one of the same request
        replaces it (NodeODM's outcome); otherwise it is stored beside it (`a_.jpg`). Files are
        written in `staging` until complete (default: `.partial/` in `directory`), in files `reuse` hands
    out when it has one (the proxy's spare files).

        `keep_on_disconnect` is NodeODM's behaviour, for the simulator only: when the body stops with
        an exception from the stream (the client's connection ended) or a cancellation, the file being
        written is stored cut off under its name and the complete ones stay, whatever
        `keep_completed_on_error` says; the caller still gets the FormError (or the cancellation).
    """
    if not is_multipart(content_type):
        await drain(stream)
        return ParsedForm()
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        await drain(stream)
        raise FormError("Multipart: Boundary not found")
    try:
        scanner = MultipartScanner(boundary)
    except ValueError as exc:
        await drain(stream)
        raise FormError(f"Multipart: {exc}") from None
    collector = _Collector(
        file_field, directory, gate, on_file_start, repeat_of, replace_same_name, staging, reuse
    )
    try:
        async for chunk in stream:
            if not isinstance(chunk, bytes):
                chunk = bytes(chunk)
            view = memoryview(chunk)
            for kind, a, b in scanner.feed(chunk):
                if kind == DATA:
                    collector.data(view[a:b])
                elif kind == HELD:
                    collector.data(a)
                elif kind == HEADERS:
                    collector.start_part(a)
                elif kind == PART_END:
                    stored = len(collector.form.files)
                    await collector.end_part()
                    if on_file is not None and len(collector.form.files) > stored:
                        on_file(collector.form.files[-1])
                elif kind == ERROR:
                    raise FormError(f"Multipart: {a}")
        if collector.writing:
            raise FormError("Multipart: Unexpected end of form")
    except FormError:
        collector.discard_current(all_files=not keep_completed_on_error)
        await drain(stream)
        raise
    except BaseException as exc:
        # Includes the client disconnecting (starlette's ClientDisconnect) and cancellation.
        if keep_on_disconnect:
            collector.keep_current()
        else:
            collector.discard_current(all_files=not keep_completed_on_error)
        if isinstance(exc, Exception):
            raise FormError(f"Multipart: {exc}") from exc
        raise
    return collector.form
