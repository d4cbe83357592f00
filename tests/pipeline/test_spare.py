"""Spare files (`pipeline/spare.py`): emptied when kept, empty when reused, never more than the limit."""

from __future__ import annotations

import os
from pathlib import Path

from clusterodm.pipeline.spare import SpareFiles


def test_kept_files_come_back_empty(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(os.urandom(1000 + i))
    (folder / "sub").mkdir()
    spare = SpareFiles(tmp_path / "spare", limit=3)
    spare.keep(folder)
    assert len(spare) == 3
    assert sorted(p.stat().st_size for p in (tmp_path / "spare").iterdir()) == [0, 0, 0]
    assert len(list(folder.iterdir())) == 3  # two files over the limit and the folder stay (rmtree's)
    target = tmp_path / "partial-1"
    fd = spare.take(target)
    assert fd is not None
    os.write(fd, b"new")
    os.close(fd)
    assert target.read_bytes() == b"new"
    assert len(spare) == 2


def test_adopted_folder_leaves_at_once(tmp_path: Path) -> None:
    root = tmp_path / "tmp" / "uuid"
    (root / "files").mkdir(parents=True)
    (root / "files" / "a.jpg").write_bytes(b"a")
    spare = SpareFiles(tmp_path / "spare")
    moved = spare.adopt(root)
    assert not root.exists() and (moved / "files" / "a.jpg").read_bytes() == b"a"
    spare.keep(moved / "files")
    assert len(spare) == 1
    assert spare.adopt(root) == root  # gone already: nothing moved


def test_nothing_to_take_and_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "spare").mkdir()
    (tmp_path / "spare" / "7").write_bytes(b"left by an earlier run")
    spare = SpareFiles(tmp_path / "spare")
    assert list((tmp_path / "spare").iterdir()) == []
    assert spare.take(tmp_path / "x") is None
    assert not (tmp_path / "x").exists()
