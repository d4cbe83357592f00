"""Upload sessions: one folder `tmp/{uuid}/` per task being created.

The folder is the durable record: a restart finds committed sessions there and resumes their
forward, and uncommitted ones stay open until the stale-upload cleanup removes them. Counts are
kept in memory (exact: a file is counted once its part has fully arrived) and rebuilt from disk.

Layout: `session.json` (fields, owner token, state) beside `files/`, which holds the uploaded
files and nothing else, and `partial/`, where files are written until their part is complete. A
client's file can have any name (`session.json`, `.session.json.tmp`...): it lands in `files/`,
never overwrites the session's own record, and the record is never sent on as one of the files.
Files are written in `partial/` under a random name (a spare file moved there when there is one,
`spare.py`) and linked into `files/` once complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from clusterodm.nodeodm.names import classify_upload
from clusterodm.pipeline.spare import SpareFiles

log = logging.getLogger("clusterodm.pipeline")

EARLY_ATTEMPTS = 3
RECORD = "session.json"
FILES_DIR = "files"
STAGING_DIR = "partial"


def is_image(name: str) -> bool:
    """Files that count as images for clusterodm's own limits and counts (a token's maxImages, the
    imagesCount it reports while forwarding): GCP/geo `.txt`, alignment and `.zip` files do not.
    A node counts every file (`Session.node_files`)."""
    return classify_upload(name) == "image"


@dataclass(eq=False)
class Session:
    uuid: str
    token: str
    root: Path
    """`tmp/{uuid}/`: the record, the files, the staging folder."""
    fields: dict[str, Any]
    created_ms: int
    committed: bool = False
    images: int = 0
    files: int = 0
    reserved: int = 0
    """Image parts being written right now (counted against the limit before they finish)."""
    active: int = 0
    """Upload requests in flight; commit waits for them."""
    bytes: int = 0
    """Size of the stored files (`--tmp-quota`)."""
    early_left: int = EARLY_ATTEMPTS
    """Early forwards (while uploading) this session may still start: a new one replaces one that
    failed, a few times; none after a restart (commit then forwards everything)."""
    touched: float = field(default_factory=time.time)
    """Wall-clock time of the last upload activity (the stale-upload timeout counts from it)."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def node_files(self) -> int:
        """What a NodeODM node counts against its maxImages: every uploaded file (GCP and other
        `.txt` files, `.zip` archives included, spec 9.2), plus the archive a `zipurl` downloads."""
        return self.files + (1 if self.fields.get("zipurl") else 0)

    @property
    def directory(self) -> Path:
        """The uploaded files, exactly what the client sent (and nothing of the session's own)."""
        return self.root / FILES_DIR

    @property
    def staging(self) -> Path:
        """Files being received, until their part is complete (`formparse`)."""
        return self.root / STAGING_DIR

    def file_names(self) -> list[str]:
        """Stored upload names (sorted, so forwards and resumes are deterministic)."""
        return sorted(e.name for e in os.scandir(self.directory) if e.is_file())

    def begin_request(self) -> None:
        self.active += 1
        self.idle.clear()
        self.touched = time.time()

    def end_request(self) -> None:
        self.active -= 1
        self.touched = time.time()
        if self.active == 0:
            self.idle.set()

    def add_file(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.bytes += (self.directory / name).stat().st_size
        self.files += 1
        if is_image(name):
            self.images += 1
        self.touched = time.time()


class SessionStore:
    """The sessions under `tmp_dir`, by uuid; with `spare`, dropped sessions' files are kept for
    reuse instead of deleted (`spare.py`)."""

    def __init__(self, tmp_dir: Path, spare: SpareFiles | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.spare = spare
        self._sessions: dict[str, Session] = {}
        self.on_drop: Callable[[str], None] | None = None
        """Told each uuid `drop` removes (the shared store forgets this replica held it)."""
        self.reserved_bytes = 0
        """Bytes of upload requests in flight, counted against `--tmp-quota` until they end."""

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._sessions

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._sessions.values()))

    def get(self, uuid: str) -> Session | None:
        return self._sessions.get(uuid)

    def bytes_used(self) -> int:
        """Disk the sessions use (stored files) plus the upload requests still arriving."""
        return sum(s.bytes for s in self._sessions.values()) + self.reserved_bytes

    def create(self, uuid: str, token: str, fields: dict[str, Any]) -> Session:
        root = self.tmp_dir / uuid
        root.mkdir(parents=True, exist_ok=False)
        session = Session(uuid, token, root, fields, created_ms=int(time.time() * 1000))
        session.directory.mkdir()
        session.staging.mkdir()
        self.save(session)
        self._sessions[uuid] = session
        return session

    def save(self, session: Session) -> None:
        """Write the record atomically (0600: it holds the owner's token until the forward ends)."""
        record = {
            "token": session.token,
            "fields": session.fields,
            "committed": session.committed,
            "createdMs": session.created_ms,
        }
        path = session.root / RECORD
        temp = session.root / f".{RECORD}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(record))
        os.replace(temp, path)

    def forget(self, uuid: str) -> Session | None:
        return self._sessions.pop(uuid, None)

    async def drop(self, uuid: str) -> None:
        """Forget the session and delete its folder (also when no session is loaded for it)."""
        self._sessions.pop(uuid, None)
        if self.on_drop is not None:
            self.on_drop(uuid)
        await asyncio.to_thread(self._remove, self.tmp_dir / uuid)

    def _remove(self, root: Path) -> None:
        if self.spare is not None:
            root = self.spare.adopt(root)  # out of tmp/ at once; emptying the files takes longer
            self.spare.keep(root / FILES_DIR)
        shutil.rmtree(root, True)

    def load(self) -> list[Session]:
        """Rebuild sessions from `tmp_dir` after a restart; folders without a readable record (an
        older layout's `body.json` included) are returned by `orphans()` instead."""
        loaded = []
        for entry in sorted(self.tmp_dir.iterdir()) if self.tmp_dir.is_dir() else []:
            session = self._load_one(entry)
            if session is not None:
                self._sessions[session.uuid] = session
                loaded.append(session)
        return loaded

    def _load_one(self, root: Path) -> Session | None:
        try:
            record = orjson.loads((root / RECORD).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
            return None
        if not (root / FILES_DIR).is_dir():
            return None
        session = Session(
            root.name,
            str(record.get("token") or ""),
            root,
            record["fields"],
            created_ms=int(record.get("createdMs") or 0),
            committed=bool(record.get("committed")),
            early_left=0,
        )
        # Files cut off by the restart were never complete: they go.
        shutil.rmtree(session.staging, ignore_errors=True)
        session.staging.mkdir()
        for name in session.file_names():
            session.add_file(name)
        return session

    def orphans(self) -> list[Path]:
        """Entries of `tmp_dir` that belong to no session (crash leftovers, foreign files)."""
        if not self.tmp_dir.is_dir():
            return []
        return [p for p in self.tmp_dir.iterdir() if p.name not in self._sessions]
