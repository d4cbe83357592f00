"""Autoscaler errors: one for bad configuration (fatal at start), one for a failed machine."""

from __future__ import annotations

from clusterodm.config import ConfigError


class AsrConfigError(ConfigError):
    """The `--asr` setup cannot work; `problems` holds one line an operator can act on per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class AutoscaleError(Exception):
    """Creating or setting up a machine failed; the message is fit for the task's output."""
