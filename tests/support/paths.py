"""Well-known paths for tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (the directory holding pyproject.toml)."""

TEST_DATA = REPO / "tests" / "data"
"""Captured real NodeODM 2.2.4 responses (nodeodm-info.json, nodeodm-options.json, ...), kept as captured."""

VENV_BIN = Path(sys.executable).parent
"""The bin directory of the running interpreter (console scripts such as clusterodm-simnode live here)."""
