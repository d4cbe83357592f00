"""Well-known paths for tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (the directory holding pyproject.toml)."""

SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
"""Captured real NodeODM responses (nodeodm-info.json, nodeodm-options.json, ...)."""

VENV_BIN = Path(sys.executable).parent
"""The bin directory of the running interpreter (console scripts such as clusterodm-simnode live here)."""
