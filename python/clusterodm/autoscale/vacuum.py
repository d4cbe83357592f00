"""Which auto-spawned machines to destroy: past maxRuntime, idle past maxUploadTime, or offline too long.

Offline time is how long the node has actually been offline (`Node.offline_for_ms`), not the time
since its last good poll as in ClusterODM, where one failed poll meant "offline since 1970" (spec 8.17).
"""

from __future__ import annotations

from collections.abc import Iterable

from clusterodm.cluster.node import Node

VACUUM_INTERVAL_S = 600.0


def vacuum_reason(node: Node, now_ms: int) -> str | None:
    """Why `node` should be destroyed now, or None to keep it."""
    dm = node.docker_machine
    if dm is None:
        return None
    age_s = (now_ms - dm.created_ms) / 1000
    if node.online(now_ms):
        if dm.max_runtime_s > 0 and age_s > dm.max_runtime_s:
            return f"running for {age_s:.0f} s, past maxRuntime ({dm.max_runtime_s} s)"
        if dm.max_upload_time_s > 0 and not node.task_queue_count and age_s > dm.max_upload_time_s:
            return f"no task after {age_s:.0f} s, past maxUploadTime ({dm.max_upload_time_s} s)"
        return None
    offline_s = node.offline_for_ms(now_ms) / 1000
    if dm.max_upload_time_s > 0 and offline_s > dm.max_upload_time_s:
        return f"offline for {offline_s:.0f} s, past maxUploadTime ({dm.max_upload_time_s} s)"
    return None


def to_vacuum(nodes: Iterable[Node], now_ms: int) -> list[tuple[Node, str]]:
    out = []
    for node in nodes:
        reason = vacuum_reason(node, now_ms)
        if reason is not None:
            out.append((node, reason))
    return out
