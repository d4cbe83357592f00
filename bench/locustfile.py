"""WebODM-like load on a running clusterodm: create tasks, poll info/output, download results.

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:3000 --headless -u 20 -r 5 -t 2m

Set CLUSTERODM_TOKEN for a proxy started with --token. Images are small generated files.
"""

from __future__ import annotations

import os
import random
import uuid as uuidlib

from locust import HttpUser, between, task

TOKEN = os.environ.get("CLUSTERODM_TOKEN", "")
IMAGES = int(os.environ.get("BENCH_IMAGES", "5"))


class WebODMUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.params = {"token": TOKEN} if TOKEN else {}
        self.tasks_seen: list[str] = []

    @task(1)
    def create_task(self) -> None:
        init = self.client.post(
            "/task/new/init",
            params=self.params,
            files={"name": (None, "bench"), "options": (None, "[]")},
            headers={"set-uuid": str(uuidlib.uuid4())},
            name="/task/new/init",
        ).json()
        task_id = init.get("uuid")
        if not task_id:
            return
        for i in range(IMAGES):
            payload = b"\xff\xd8\xff\xe0" + random.randbytes(4096) + b"\xff\xd9"
            self.client.post(
                f"/task/new/upload/{task_id}",
                params=self.params,
                files={"images": (f"IMG_{i:04d}.JPG", payload, "image/jpeg")},
                name="/task/new/upload",
            )
        self.client.post(f"/task/new/commit/{task_id}", params=self.params, name="/task/new/commit")
        self.tasks_seen.append(task_id)

    @task(10)
    def poll(self) -> None:
        if not self.tasks_seen:
            return
        task_id = random.choice(self.tasks_seen)
        info = self.client.get(f"/task/{task_id}/info", params=self.params, name="/task/[uuid]/info").json()
        self.client.get(
            f"/task/{task_id}/output", params={**self.params, "line": "-9"}, name="/task/[uuid]/output"
        )
        if info.get("status", {}).get("code") == 40:
            with self.client.get(
                f"/task/{task_id}/download/all.zip",
                params=self.params,
                stream=True,
                name="/task/[uuid]/download",
            ) as reply:
                for _ in reply.iter_content(1 << 20):
                    pass
            self.tasks_seen.remove(task_id)
