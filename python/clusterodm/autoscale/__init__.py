"""Autoscaling with docker-machine (spec section 6): one machine per task when no node has room."""

from __future__ import annotations

from clusterodm.autoscale.errors import AsrConfigError, AutoscaleError
from clusterodm.autoscale.scaler import Autoscaler

__all__ = ["AsrConfigError", "AutoscaleError", "Autoscaler"]
