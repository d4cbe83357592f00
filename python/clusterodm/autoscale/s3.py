"""Task downloads served from S3 (stub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterodm.services import Cluster


class S3Downloads:
    @classmethod
    def from_config(cls, cluster: Cluster) -> S3Downloads | None:
        return None
