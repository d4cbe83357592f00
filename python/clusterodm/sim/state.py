"""Everything one simulated node holds, passed to handlers through ``app.state.sim``."""

from __future__ import annotations

import random
from dataclasses import dataclass

from clusterodm.sim.config import SimConfig
from clusterodm.sim.resources import NodeData
from clusterodm.sim.tasks import TaskManager
from clusterodm.sim.webhooks import WebhookSender


@dataclass
class SimState:
    config: SimConfig
    data: NodeData
    tasks: TaskManager
    webhooks: WebhookSender
    rng: random.Random

    @classmethod
    def create(cls, config: SimConfig) -> SimState:
        data = NodeData.load()
        webhooks = WebhookSender(config.webhook_retry_seconds)
        config.uploads_dir.mkdir(parents=True, exist_ok=True)
        config.tasks_dir.mkdir(parents=True, exist_ok=True)
        return cls(config, data, TaskManager(config, data, webhooks), webhooks, random.Random(config.seed))

    def should_drop_upload(self) -> bool:
        """Deterministic (given ``--seed``) choice of which upload requests fail."""
        return self.config.drop_uploads > 0 and self.rng.random() < self.config.drop_uploads

    async def aclose(self) -> None:
        await self.tasks.aclose()
        await self.webhooks.aclose()
