"""Bundled NodeODM captures (option list, all.zip member names, console output) loaded as package data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


def _load(name: str) -> Any:
    return json.loads(resources.files("clusterodm.sim").joinpath(name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class NodeData:
    options: list[dict[str, Any]]
    allzip_members: list[str]
    output_lines: list[str]

    @classmethod
    def load(cls) -> NodeData:
        return cls(_load("options.json"), _load("allzip_listing.json"), _load("task_output.json"))
