"""Upload file naming and ``set-uuid`` checks, as NodeODM applies them to multipart uploads."""

from __future__ import annotations

import re

_SET_UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE
)
RESERVED_NAME = "body.json"
"""NodeODM keeps the init fields in ``body.json`` next to the uploads, so an upload may not use it."""


def is_valid_set_uuid(value: str) -> bool:
    """True if ``value`` is a canonical UUID of version 1-7 (the ``set-uuid`` header rule)."""
    return _SET_UUID_RE.match(value) is not None


def sanitize_upload_name(filename: str) -> str:
    """The stored name of an uploaded file: path components stripped, ``body.json`` -> ``_body.json``."""
    base = re.split(r"[/\\]", filename)[-1].replace("\x00", "")
    if base in ("", ".", ".."):
        base = "_"
    if base == RESERVED_NAME:
        base = "_" + base
    return base


def split_ext(filename: str) -> tuple[str, str]:
    """Split like Node's ``path.extname``: the last dot that is not the first character."""
    dot = filename.rfind(".")
    if dot <= 0:
        return filename, ""
    return filename[:dot], filename[dot:]


def next_collision_name(filename: str) -> str:
    """The name to try after ``filename`` is taken: ``_`` before the extension (``a.jpg`` -> ``a_.jpg``)."""
    stem, ext = split_ext(filename)
    return f"{stem}_{ext}"


def classify_upload(filename: str) -> str:
    """What NodeODM does with an uploaded file: ``gcp``, ``geo``, ``image_groups``, ``align``, ``seed``,
    ``zip`` or ``image``."""
    lower = filename.lower()
    if lower == "geo.txt":
        return "geo"
    if lower == "image_groups.txt":
        return "image_groups"
    if lower.endswith(".txt"):
        return "gcp"
    if lower in ("align.las", "align.laz", "align.tif"):
        return "align"
    if lower == "seed.zip":
        return "seed"
    if lower.endswith(".zip"):
        return "zip"
    return "image"
