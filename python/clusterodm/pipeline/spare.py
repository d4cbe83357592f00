"""Emptied upload files kept for reuse, instead of deleting them and creating new ones.

clusterodm stores every uploaded file and deletes its copies once a node has the task, thousands
of small files per task. Creating a file shortly after many were deleted is slow on ext4: the
inode allocator steps over each recently freed inode (the kernel's `recently_deleted`), 0.2-0.5 ms
of CPU per file on the test machine, about a sixth of the proxy's work per small-file upload
request, and a third of its wall time blocked on the event loop (bench/README.md, Upload). So the
files of a finished session are emptied and moved to `data/spare/`, and a new upload part takes
one of them (a rename) before it would create a file. A spare file is truncated when it is put
aside and again when it is reused: nothing of one task's upload can show in another's.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections import deque
from pathlib import Path

LIMIT = 4096
"""Spare files kept at most (empty files: an inode each, no data)."""


class SpareFiles:
    """The spare files in one folder; `keep` runs in worker threads, `take` on the event loop."""

    def __init__(self, directory: Path, limit: int = LIMIT) -> None:
        self.directory = directory
        self._limit = limit
        self._names: deque[str] = deque()
        self._serial = itertools.count()
        # What an earlier run left is not known to be empty: start afresh.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self._names)

    def take(self, target: Path) -> int | None:
        """Move a spare file to `target` and open it for writing (empty); None when there is none."""
        while self._names:
            name = self._names.pop()
            try:
                os.rename(self.directory / name, target)
                return os.open(target, os.O_WRONLY | os.O_TRUNC)
            except OSError:
                continue
        return None

    def adopt(self, root: Path) -> Path:
        """Move a finished session's folder into the spare folder at once (its files are emptied
        after, and a restart's wipe takes what a crash left); where it is now."""
        moved = self.directory / f".session-{next(self._serial)}"
        try:
            os.rename(root, moved)
        except OSError:
            return root
        return moved

    def keep(self, folder: Path) -> None:
        """Empty the files of `folder` and keep them (up to the limit); blocking, for a worker thread."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if len(self._names) >= self._limit:
                return
            if not entry.is_file(follow_symlinks=False):
                continue
            name = str(next(self._serial))
            try:
                os.truncate(entry.path, 0)
                os.rename(entry.path, self.directory / name)
            except OSError:
                continue
            self._names.append(name)
