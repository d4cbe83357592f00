"""The ASR file (`--asr config.json`): ClusterODM's keys and defaults, checked once at start.

The provider's defaults are merged with the file (objects merge key by key, everything else is
replaced), so an operator's existing file keeps working. Required keys still holding ClusterODM's
`CHANGEME!` placeholder, or missing, are reported together, one line each.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from clusterodm.autoscale.errors import AsrConfigError
from clusterodm.autoscale.providers import PROVIDERS, ProviderSpec

PLACEHOLDER = "CHANGEME!"

COMMON_DEFAULTS: dict[str, Any] = {
    "maxRuntime": -1,
    "maxUploadTime": -1,
    "createRetries": 1,
    "minImages": -1,
    "addSwap": 1,
    "dockerImage": "opendronemap/nodeodm",
    "dockerGpu": False,
    "engineInstallUrl": "",
    # Ours: seconds between a finished task's webhook and the destruction of its machine.
    "commitCleanupDelay": 10,
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; nested objects merge, other values (arrays too) replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _number(data: dict[str, Any], key: str, problems: list[str]) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"ASR config: {key} must be a number, got {value!r}")
        return -1
    return value


@dataclass(frozen=True)
class AsrSettings:
    """The merged ASR configuration with the values the autoscaler uses typed out."""

    provider: ProviderSpec
    raw: dict[str, Any]
    max_runtime_s: int
    max_upload_time_s: int
    create_retries: int
    min_images: int
    machines_limit: int
    add_swap: float
    size_mapping: tuple[dict[str, Any], ...]
    commit_cleanup_delay_s: float

    def get(self, dotted: str, default: Any = None) -> Any:
        value = _lookup(self.raw, dotted)
        return default if value is None else value

    def size_for(self, images_count: int) -> dict[str, Any] | None:
        """The first `imageSizeMapping` entry (ascending) with maxImages >= images_count."""
        return next((m for m in self.size_mapping if m["maxImages"] >= images_count), None)

    def pick(self, key: str, attempt: int) -> Any:
        """`region`/`location` may be a list: attempt k (1-based) uses element (k-1) mod len."""
        value = self.raw.get(key)
        if isinstance(value, list):
            return value[(attempt - 1) % len(value)] if value else None
        return value

    def regions_count(self) -> int:
        value = self.raw.get(self.provider.region_key)
        return len(value) if isinstance(value, list) and value else 1


def parse_settings(data: Any, source: str = "ASR config") -> AsrSettings:
    """Validate a decoded ASR file; AsrConfigError lists every problem found."""
    if not isinstance(data, dict):
        raise AsrConfigError([f"{source} must hold a JSON object"])
    name = data.get("provider")
    spec = PROVIDERS.get(name) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(sorted(PROVIDERS))
        raise AsrConfigError([f"{source}: provider must be one of {known}, got {name!r}"])
    raw = deep_merge(deep_merge(COMMON_DEFAULTS, spec.defaults), data)
    problems: list[str] = []
    for key in spec.required:
        value = _lookup(raw, key)
        if value is None:
            problems.append(f"{source}: required key {key} is missing")
        elif value == PLACEHOLDER:
            problems.append(f"{source}: required key {key} is still {PLACEHOLDER}, set it")
    key_path = _lookup(raw, "sshKey.path")
    if isinstance(key_path, str) and key_path and not Path(key_path).is_file():
        problems.append(f"{source}: sshKey.path {key_path} does not exist")
    mapping = raw.get("imageSizeMapping")
    sizes: list[dict[str, Any]] = []
    if not isinstance(mapping, list):
        problems.append(f"{source}: imageSizeMapping must be a list of {{maxImages, slug}} objects")
    else:
        for entry in mapping:
            if (
                not isinstance(entry, dict)
                or isinstance(entry.get("maxImages"), bool)
                or not isinstance(entry.get("maxImages"), int | float)
                or not isinstance(entry.get("slug"), str)
            ):
                problems.append(f"{source}: imageSizeMapping entry {entry!r} needs maxImages and slug")
            else:
                sizes.append(entry)
    numbers = {
        key: _number(raw, key, problems)
        for key in ("maxRuntime", "maxUploadTime", "createRetries", "minImages", "addSwap")
    }
    numbers["limit"] = _number(raw, spec.limit_key, problems)
    numbers["delay"] = _number(raw, "commitCleanupDelay", problems)
    if problems:
        raise AsrConfigError(problems)
    return AsrSettings(
        provider=spec,
        raw=raw,
        max_runtime_s=int(numbers["maxRuntime"]),
        max_upload_time_s=int(numbers["maxUploadTime"]),
        create_retries=max(1, int(numbers["createRetries"])),
        min_images=int(numbers["minImages"]),
        machines_limit=int(numbers["limit"]),
        add_swap=float(numbers["addSwap"]),
        size_mapping=tuple(sorted(sizes, key=lambda m: m["maxImages"])),
        commit_cleanup_delay_s=max(0.0, float(numbers["delay"])),
    )


def load_settings(path: str | Path) -> AsrSettings:
    """Read and validate the ASR file named by `--asr`."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise AsrConfigError([f"cannot read ASR config {path}: {e.strerror or e}"]) from None
    except orjson.JSONDecodeError as e:
        raise AsrConfigError([f"ASR config {path} is not valid JSON: {e}"]) from None
    return parse_settings(data, f"ASR config {path}")
