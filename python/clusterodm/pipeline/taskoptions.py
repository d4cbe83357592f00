"""Split-merge injection (spec 2.6): a split task's `sm-cluster` points at this proxy.

The rest of a task's option handling is `nodeodm.limits.check_task_options`, which calls this
as its `adjust` step.
"""

from __future__ import annotations

from typing import Any

SM_CLUSTER = "sm-cluster"


def split_merge(
    options: list[dict[str, Any]], enabled: bool, cluster_url: str, token: str
) -> list[dict[str, Any]]:
    """Point split tasks' `sm-cluster` at this proxy (with the user's token), or strip it when disabled."""
    rest = [o for o in options if o.get("name") != SM_CLUSTER]
    if not enabled:
        return rest
    if not any(o.get("name") == "split" for o in options):
        return options
    url = cluster_url.rstrip("/") + "/"
    if token:
        url += f"?token={token}"
    return [*rest, {"name": SM_CLUSTER, "value": url}]
