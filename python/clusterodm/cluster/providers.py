"""Who may use the cluster and within which limits: ClusterODM's cloud-provider seam.

`local` (the default) knows one optional shared token and sets no limits; other providers
(ClusterODM's Lightning, say) plug in behind the same interface.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Protocol

AUTH_NOT_AVAILABLE = {
    "message": "Authentication not available on this node",
    "loginUrl": None,
    "registerUrl": None,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-token limits (spec 2.6); None means unlimited."""

    max_images: int | None = None
    max_concurrent_tasks: int | None = None
    options: dict[str, dict[str, Any]] | None = None


NO_LIMITS = Limits()


class Provider(Protocol):
    async def validate(self, token: str) -> Limits | None:
        """Limits of a valid token, or None to refuse the request (401)."""

    def auth_info(self) -> dict[str, Any]: ...

    async def approve_new_task(self, token: str, images_count: int) -> str | None:
        """An error message refusing the task, or None to accept it."""

    async def task_finished(self, token: str, info: dict[str, Any]) -> None: ...

    def clear_cache(self, token: str) -> None: ...


class LocalProvider:
    """One shared token (`--token`), compared in constant time; no limits."""

    def __init__(self, token: str = "") -> None:
        self._token = token.encode()

    async def validate(self, token: str) -> Limits | None:
        if not self._token:
            return NO_LIMITS
        return NO_LIMITS if hmac.compare_digest(token.encode(), self._token) else None

    def auth_info(self) -> dict[str, Any]:
        return dict(AUTH_NOT_AVAILABLE)

    async def approve_new_task(self, token: str, images_count: int) -> str | None:
        return None

    async def task_finished(self, token: str, info: dict[str, Any]) -> None:
        return None

    def clear_cache(self, token: str) -> None:
        return None


def make_provider(name: str, token: str) -> Provider:
    """The provider named by `--cloud-provider` (config validation already refused unknown names)."""
    if name == "local":
        return LocalProvider(token)
    raise ValueError(f"unknown cloud provider {name!r}")
