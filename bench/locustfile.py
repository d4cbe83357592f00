"""WebODM-like load on a running clusterodm: create tasks, poll info/output, download results.

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:3000 --headless -u 20 -r 5 -t 2m

Set CLUSTERODM_TOKEN for a proxy started with --token, BENCH_REMOVE=1 to have each user remove
its task once downloaded (a user deleting it; the cluster's task count then stays steady). Images
are small generated files. An
answer that is HTTP 200 with `{"error": ...}` (NodeODM's way of failing) counts as a failed
request, named after the error, as WebODM would see it fail.
"""

from __future__ import annotations

import os
import random
import uuid as uuidlib
from typing import Any

from locust import HttpUser, between, task

TOKEN = os.environ.get("CLUSTERODM_TOKEN", "")
IMAGES = int(os.environ.get("BENCH_IMAGES", "5"))
REMOVE = os.environ.get("BENCH_REMOVE", "") == "1"


class WebODMUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.params = {"token": TOKEN} if TOKEN else {}
        self.tasks_seen: list[str] = []

    def _json(self, method: str, url: str, name: str, **kwargs: Any) -> Any:
        """The JSON answer of one request; a `{"error": ...}` answer is marked failed."""
        client = self.client
        with client.request(method, url, params=self.params, name=name, catch_response=True, **kwargs) as r:
            try:
                body = r.json()
            except ValueError:
                r.failure(f"not JSON (HTTP {r.status_code})")
                return None
            if isinstance(body, dict) and "error" in body:
                r.failure(f"error: {body['error']}")
            return body

    @task(1)
    def create_task(self) -> None:
        init = self._json(
            "POST",
            "/task/new/init",
            "/task/new/init",
            files={"name": (None, "bench"), "options": (None, "[]")},
            headers={"set-uuid": str(uuidlib.uuid4())},
        )
        task_id = init.get("uuid") if isinstance(init, dict) else None
        if not task_id:
            return
        for i in range(IMAGES):
            payload = b"\xff\xd8\xff\xe0" + random.randbytes(4096) + b"\xff\xd9"
            self._json(
                "POST",
                f"/task/new/upload/{task_id}",
                "/task/new/upload",
                files={"images": (f"IMG_{i:04d}.JPG", payload, "image/jpeg")},
            )
        self._json("POST", f"/task/new/commit/{task_id}", "/task/new/commit")
        self.tasks_seen.append(task_id)

    @task(10)
    def poll(self) -> None:
        if not self.tasks_seen:
            return
        task_id = random.choice(self.tasks_seen)
        info = self._json("GET", f"/task/{task_id}/info", "/task/[uuid]/info")
        self.client.get(
            f"/task/{task_id}/output", params={**self.params, "line": "-9"}, name="/task/[uuid]/output"
        )
        if isinstance(info, dict) and info.get("status", {}).get("code") == 40:
            with self.client.get(
                f"/task/{task_id}/download/all.zip",
                params=self.params,
                stream=True,
                name="/task/[uuid]/download",
                catch_response=True,
            ) as reply:
                first = b""
                for chunk in reply.iter_content(1 << 20):
                    first = first or chunk
                if reply.status_code != 200 or not first.startswith(b"PK"):
                    reply.failure(f"not a zip (HTTP {reply.status_code}): {first[:100]!r}")
            self.tasks_seen.remove(task_id)
            if REMOVE:
                self._json("POST", "/task/remove", "/task/remove", data={"uuid": task_id})
