"""Who may use the cluster and within which limits: ClusterODM's cloud-provider seam.

`local` (the default) knows one optional shared token and sets no limits; other providers
(ClusterODM's Lightning, say) plug in behind the same interface.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Protocol

import orjson

from clusterodm.nodeodm.limits import NO_LIMITS, Limits

__all__ = [
    "AUTH_NOT_AVAILABLE",
    "NO_LIMITS",
    "Limits",
    "LocalProvider",
    "Provider",
    "make_provider",
    "parse_limits",
]

AUTH_NOT_AVAILABLE = {
    "message": "Authentication not available on this node",
    "loginUrl": None,
    "registerUrl": None,
}


class Provider(Protocol):
    async def validate(self, token: str) -> Limits | None:
        """Limits of a valid token, or None to refuse the request (401)."""

    def auth_info(self) -> dict[str, Any]: ...

    async def approve_new_task(self, token: str, images_count: int) -> str | None:
        """An error message refusing the task, or None to accept it."""

    async def task_finished(self, token: str, info: dict[str, Any]) -> None: ...

    def clear_cache(self, token: str) -> None: ...


class LocalProvider:
    """One shared token (`--token`), compared in constant time; optional limits for everyone."""

    def __init__(self, token: str = "", limits: Limits = NO_LIMITS) -> None:
        self._token = token.encode()
        self._limits = limits

    async def validate(self, token: str) -> Limits | None:
        if not self._token:
            return self._limits
        return self._limits if hmac.compare_digest(token.encode(), self._token) else None

    def auth_info(self) -> dict[str, Any]:
        return dict(AUTH_NOT_AVAILABLE)

    async def approve_new_task(self, token: str, images_count: int) -> str | None:
        return None

    async def task_finished(self, token: str, info: dict[str, Any]) -> None:
        return None

    def clear_cache(self, token: str) -> None:
        return None


def parse_limits(data: object) -> Limits:
    """ClusterODM's limits object (`maxImages`, `maxConcurrentTasks`, `options`); ValueError if malformed."""
    if not isinstance(data, dict):
        raise ValueError("limits must be a JSON object")
    unknown = set(data) - {"maxImages", "maxConcurrentTasks", "options"}
    if unknown:
        raise ValueError(f"unknown limits keys: {', '.join(sorted(unknown))}")

    def count(key: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        return value

    options = data.get("options")
    if options is not None and (
        not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values())
    ):
        raise ValueError("options must map option names to objects")
    return Limits(count("maxImages"), count("maxConcurrentTasks"), options)


def make_provider(name: str, token: str, limits_file: str = "") -> Provider:
    """The provider named by `--cloud-provider` (config validation already refused unknown names)."""
    if name != "local":
        raise ValueError(f"unknown cloud provider {name!r}")
    limits = NO_LIMITS
    if limits_file:
        try:
            limits = parse_limits(orjson.loads(Path(limits_file).read_bytes()))
        except (OSError, orjson.JSONDecodeError, ValueError) as e:
            raise ValueError(f"limits file {limits_file}: {e}") from None
    return LocalProvider(token, limits)
