"""Helpers shared by the pipeline tests."""

from __future__ import annotations

from support.clusterodm import ClusterODM


def tmp_entries(cluster: ClusterODM) -> list[str]:
    return sorted(p.name for p in cluster.tmp_dir.iterdir()) if cluster.tmp_dir.exists() else []
