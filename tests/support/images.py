"""Small generated image files for upload tests."""

from __future__ import annotations

import random
from pathlib import Path


def make_images(directory: Path, count: int, size: int = 2048, prefix: str = "IMG_") -> list[str]:
    """``count`` JPEG-looking files (SOI marker, random payload, EOI marker); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count)
    paths = []
    for i in range(count):
        path = directory / f"{prefix}{i:04d}.JPG"
        path.write_bytes(b"\xff\xd8\xff\xe0" + rng.randbytes(size) + b"\xff\xd9")
        paths.append(str(path))
    return paths


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive holding ``members`` (name -> content; names may contain folders)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
