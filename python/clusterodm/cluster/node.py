"""One processing node: its configuration (persisted) and its last known state (runtime only).

ClusterODM compares node ports as given (`"3000"` and `3000` are two nodes, and https is used
only for the number 443); here the port is always an int, parsed once at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ONLINE_WINDOW_MS = 120_000
"""A node counts as online while its last good /info poll is younger than this (ClusterODM: 2 min)."""


def parse_port(value: object) -> int:
    """Port from nodes.json / CLI / web input (string or number); ValueError when not 1..65535."""
    if isinstance(value, bool):
        raise ValueError(f"invalid port {value!r}")
    if isinstance(value, int):
        port = value
    elif isinstance(value, float) and value.is_integer():
        port = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        port = int(value.strip())
    else:
        raise ValueError(f"invalid port {value!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {value!r}")
    return port


def _int_or(value: object, default: int) -> int:
    """Numeric /info field as int; anything else (missing, null, text) counts as `default`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


@dataclass(slots=True)
class DockerMachine:
    """An auto-spawned machine (presence marks the node as auto-spawned)."""

    name: str
    created_ms: int
    max_runtime_s: int = -1
    max_upload_time_s: int = -1
    secret: str = ""
    """Shared secret the autoscaler gives the machine's webhook so `/commit` can be authenticated."""

    def to_json(self) -> dict[str, Any]:
        """ClusterODM's `dockerMachine` object (plus our `secret` when set; ClusterODM ignores it)."""
        out: dict[str, Any] = {
            "name": self.name,
            "created": self.created_ms,
            "maxRuntime": self.max_runtime_s,
            "maxUploadTime": self.max_upload_time_s,
        }
        if self.secret:
            out["secret"] = self.secret
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DockerMachine:
        """Parse ClusterODM's `dockerMachine`; ValueError when the name is missing."""
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("dockerMachine without a name")
        secret = data.get("secret")
        return cls(
            name=name,
            created_ms=_int_or(data.get("created"), 0),
            max_runtime_s=_int_or(data.get("maxRuntime"), -1),
            max_upload_time_s=_int_or(data.get("maxUploadTime"), -1),
            secret=secret if isinstance(secret, str) else "",
        )


@dataclass(eq=False, slots=True)
class Node:
    """A node; compare by identity (`id` is the stable SQLite id, also the key in the native tables)."""

    id: int
    hostname: str
    port: int
    token: str = ""
    locked: bool = False
    docker_machine: DockerMachine | None = None
    # Runtime state, owned by NodeRegistry.apply_info (never persisted).
    info: dict[str, Any] | None = None
    last_refreshed_ms: int = 0
    """Time of the last GOOD /info poll (0 = never); a failed poll does not reset it."""
    last_error: str | None = None
    """Why the last poll failed, None after a good one."""
    failing_since_ms: int | None = field(default=None)
    """First failed poll of a node that never answered well (for how long it has been offline)."""
    online_window_ms: int = ONLINE_WINDOW_MS
    """A node is online while its last good poll is younger than this (the registry sets it)."""
    """When the node was seen going offline; None while online or never polled."""

    @property
    def auto_spawned(self) -> bool:
        return self.docker_machine is not None

    @property
    def name(self) -> str:
        """`host:port`, how ClusterODM names nodes in logs and the admin UIs."""
        return f"{self.hostname}:{self.port}"

    @property
    def base_url(self) -> str:
        """Root URL for requests to the node (https only on port 443, like ClusterODM)."""
        scheme = "https" if self.port == 443 else "http"
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{scheme}://{host}:{self.port}"

    def online(self, now_ms: int) -> bool:
        """The last good poll is younger than the window (2 min by default).

        A single failed poll does not make a node offline (ClusterODM's blip bug): it stays
        online until the window since its last good answer runs out.
        """
        return self.last_refreshed_ms > 0 and now_ms - self.last_refreshed_ms < self.online_window_ms

    def offline_for_ms(self, now_ms: int) -> int:
        """How long the node has been offline (0 when online or never polled); for the vacuum.

        Unlike ClusterODM, a single failed poll does not make this "since 1970" (bug 17).
        """
        if self.online(now_ms):
            return 0
        if self.last_refreshed_ms > 0:  # offline since the window after its last good poll ran out
            return max(0, now_ms - (self.last_refreshed_ms + self.online_window_ms))
        if self.failing_since_ms is not None:
            return max(0, now_ms - self.failing_since_ms)
        return 0

    # Convenience views of the last /info reply; None when unknown.
    def _info_int(self, key: str) -> int | None:
        value = (self.info or {}).get(key)
        return None if isinstance(value, bool) or not isinstance(value, int | float) else int(value)

    @property
    def max_images(self) -> int | None:
        return self._info_int("maxImages")

    @property
    def max_parallel_tasks(self) -> int | None:
        return self._info_int("maxParallelTasks")

    @property
    def task_queue_count(self) -> int | None:
        return self._info_int("taskQueueCount")

    def _info_str(self, key: str) -> str | None:
        value = (self.info or {}).get(key)
        return value if isinstance(value, str) else None

    @property
    def version(self) -> str | None:
        return self._info_str("version")

    @property
    def engine(self) -> str | None:
        return self._info_str("engine")

    @property
    def engine_version(self) -> str | None:
        return self._info_str("engineVersion")

    def board_values(self) -> tuple[int | None, int, int]:
        """(max_images, max_parallel_tasks, task_queue_count) as the ranking wants them.

        Missing values count as 0, `maxImages` null/0 means unlimited (None).
        """
        info = self.info or {}
        max_images = _int_or(info.get("maxImages"), 0) or None
        return max_images, _int_or(info.get("maxParallelTasks"), 0), _int_or(info.get("taskQueueCount"), 0)

    def load(self) -> tuple[int, int]:
        """(maxParallelTasks, taskQueueCount) of the last good poll, missing values as 0."""
        _, max_parallel, queue = self.board_values()
        return max_parallel, queue

    def to_clusterodm_json(self) -> dict[str, Any]:
        """The node's entry in ClusterODM's nodes.json (port written as a number)."""
        out: dict[str, Any] = {"hostname": self.hostname, "port": self.port, "token": self.token}
        if self.locked:
            out["locked"] = True
        if self.docker_machine is not None:
            out["dockerMachine"] = self.docker_machine.to_json()
        return out

    def node_data(self) -> dict[str, Any]:
        """Full state for admin views (ClusterODM's `nodeData`: config plus `info`, `lastRefreshed`)."""
        out = self.to_clusterodm_json()
        out["info"] = self.info if self.info is not None else {}
        out["lastRefreshed"] = self.last_refreshed_ms
        if self.last_error is not None:
            out["lastError"] = self.last_error
        return out
