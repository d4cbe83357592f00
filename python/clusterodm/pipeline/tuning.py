"""Timing knobs of the pipeline that tests (and operators in a pinch) can shorten.

Defaults are the original's: a node is stalled under 30 B/s for 1600 s; flood counters are
forgiven every 15 minutes. `from_env` reads `CLUSTERODM_STALL_MIN_BPS`, `CLUSTERODM_STALL_WINDOW_S`
and `CLUSTERODM_FLOOD_DECAY_S` (seconds), so an integration test can run a real clusterodm with a
stall window of a second; `CLUSTERODM_EARLY_FORWARD=0` turns off sending files on before commit
(the upload bench measures both designs with it); with it, big files still arriving are piped on
to the node as they are written (`streaming.py`) unless `CLUSTERODM_STREAM_THROUGH=0` (then they
go in batches once complete, as small files always do).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from clusterodm.config import env_number
from clusterodm.pipeline.guards import FLOOD_DECAY_INTERVAL_S
from clusterodm.pipeline.transfer import StallPolicy


@dataclass(frozen=True)
class Tuning:
    stall: StallPolicy = field(default_factory=StallPolicy)
    flood_decay_s: float = FLOOD_DECAY_INTERVAL_S
    early_forward: bool = True
    """Send files on while the client still uploads (off: store everything, forward after commit)."""
    stream_through: bool = True
    """With `early_forward`: send each file on while it is still arriving, not once it is complete."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tuning:
        default = cls()
        number = functools.partial(env_number, environ)
        stall = StallPolicy(
            number("CLUSTERODM_STALL_MIN_BPS", default.stall.min_bytes_s),
            number("CLUSTERODM_STALL_WINDOW_S", default.stall.window_s),
        )
        early = environ.get("CLUSTERODM_EARLY_FORWARD", "1").strip() != "0"
        through = environ.get("CLUSTERODM_STREAM_THROUGH", "1" if default.stream_through else "0").strip()
        flood = number("CLUSTERODM_FLOOD_DECAY_S", default.flood_decay_s)
        return cls(stall, flood, early, through != "0")
