"""Autoscaling with docker-machine (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterodm.services import Cluster


class Autoscaler:
    @classmethod
    def from_config(cls, cluster: Cluster) -> Autoscaler | None:
        return None
