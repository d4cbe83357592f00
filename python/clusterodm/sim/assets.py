"""Building a realistic ``all.zip`` on disk: NodeODM's member names, padded to a requested size."""

from __future__ import annotations

import os
import posixpath
import random
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

PADDING_MEMBER = "odm_orthophoto/odm_orthophoto.tif"
_BLOCK = 1024 * 1024
# Fixed sizes of zip records without the member name (see the PKZIP APPNOTE).
_LOCAL_HEADER = 30
_CENTRAL_HEADER = 46
_END_RECORD = 22


def normalize_outputs(paths: Sequence[str]) -> list[str]:
    """A task's ``outputs`` list as NodeODM uses it: normalised relative paths, leading ``../`` stripped."""
    result = []
    for raw in paths:
        path = posixpath.normpath(str(raw).replace("\\", "/"))
        while path.startswith("../"):
            path = path[3:]
        path = path.lstrip("/")
        if path and path not in ("..", "."):
            result.append(path)
    return result


def select_members(listing: Sequence[str], outputs: Sequence[str] | None) -> list[str]:
    """The all.zip members for a task's ``outputs`` (None: the default listing).

    NodeODM passes 7z only the outputs that exist in the project folder (a folder brings everything
    under it); the rest are left out silently. When none exists, ``7z a`` gets no path at all and
    archives the whole folder, here the whole listing.
    """
    if outputs is None:
        return list(listing)
    chosen: list[str] = []
    for output in outputs:
        folder = output.rstrip("/") + "/"
        if output in listing:
            chosen.append(output)
        else:
            chosen.extend(name for name in listing if name.startswith(folder))
    return list(dict.fromkeys(chosen)) if chosen else list(listing)


def _member_body(name: str, output_lines: Sequence[str], images_json: bytes) -> bytes:
    if name == "task_output.txt":
        return "\n".join(line.rstrip("\n") for line in output_lines).encode()
    if name == "images.json":
        return images_json
    if name.endswith(".json"):
        return b"{}\n"
    return f"simulated {name}\n".encode()


def build_all_zip(
    path: Path,
    members: Sequence[str],
    target_size: int,
    output_lines: Sequence[str],
    images_json: bytes = b"[]\n",
) -> int:
    """Write ``all.zip`` at ``path`` (atomically) and return its size in bytes.

    Small members are written first, then the orthophoto member absorbs the remaining bytes so the
    archive lands on ``target_size`` when possible. Stored (not deflated) so the size is predictable.
    """
    tmp = path.with_name(path.name + ".part")
    names = list(dict.fromkeys(members))
    padded = PADDING_MEMBER if PADDING_MEMBER in names else None
    if padded is None:
        padded = next((n for n in names if not n.endswith("/")), None)
    central = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in names:
            if name == padded:
                continue
            if name.endswith("/"):
                archive.mkdir(name.rstrip("/"))
            else:
                archive.writestr(name, _member_body(name, output_lines, images_json))
            central += _CENTRAL_HEADER + len(name.encode())
        if padded is not None:
            used = archive.fp.tell() if archive.fp is not None else 0
            name_len = len(padded.encode())
            overhead = _LOCAL_HEADER + name_len + central + _CENTRAL_HEADER + name_len + _END_RECORD
            size = max(0, target_size - used - overhead)
            info = zipfile.ZipInfo(padded, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=size >= 0x7FFFFFFF) as out:
                for block in _padding(size):
                    out.write(block)
    os.replace(tmp, path)
    return path.stat().st_size


def _padding(size: int) -> Iterator[bytes]:
    """Incompressible-looking bytes; one block reused so large assets stay cheap to generate."""
    block = random.Random(size).randbytes(min(size, _BLOCK))
    remaining = size
    while remaining > 0:
        chunk = block[: min(remaining, len(block))]
        remaining -= len(chunk)
        yield chunk


def iter_file(path: Path, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """Stream a file from disk in chunks (used for the download response)."""
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk
