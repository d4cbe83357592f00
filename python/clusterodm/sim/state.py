"""Everything one simulated node holds, passed to handlers through ``app.state.sim``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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
    uploads: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    """Simulator only (no NodeODM counterpart): every upload request per task uuid, in arrival
    order, as `{"files": [stored names], "outcome": "success" | "dropped" | "error: ..."}`, so
    tests and benches can see how a proxy split a task into requests (`GET /_sim/uploads/{uuid}`)."""

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

    def record_upload(self, uuid: str, files: list[str], outcome: str) -> None:
        self.uploads.setdefault(uuid, []).append({"files": files, "outcome": outcome})

    async def aclose(self) -> None:
        await self.tasks.aclose()
        await self.webhooks.aclose()
