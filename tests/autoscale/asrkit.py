"""Helpers for the autoscaler tests: fake docker-machine state, moto S3 client, ASR configs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

from clusterodm.autoscale.config import deep_merge

FAKEBIN = Path(__file__).resolve().parent / "fakebin"


class FakeMachines:
    """State and environment of the fake docker-machine (see fakebin/docker-machine)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.executable = str(FAKEBIN / "docker-machine")
        # A /24 of loopback addresses of our own, so machines never collide with other tests' ports.
        self.net = f"127.{random.randint(30, 250)}.{random.randint(1, 250)}."
        self.env = {
            "PATH": f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_DM_DIR": str(state),
            "FAKE_DM_NET": self.net,
            "FAKE_DM_PYTHON": sys.executable,
        }

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def commands(self, name: str) -> list[list[str]]:
        """Argument lists of every call whose first argument is `name` (create, rm, ssh-parsed...)."""
        return [c["args"] for c in self.calls() if c["args"] and c["args"][0] == name]

    def machines(self) -> dict[str, dict[str, Any]]:
        folder = self.state / "machines"
        if not folder.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}

    def kill_all(self) -> None:
        for data in self.machines().values():
            if data.get("pid"):
                try:
                    os.killpg(data["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


class MotoS3:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name


def asr_config(provider: str = "digitalocean", **overrides: Any) -> dict[str, Any]:
    """A complete ASR config for `provider` (S3 on a placeholder endpoint unless overridden)."""
    s3 = {
        "accessKey": "testing",
        "secretKey": "testing-secret",
        "endpoint": "http://127.0.0.1:9",
        "bucket": "b",
    }
    base: dict[str, Any] = {"provider": provider, "s3": s3, "addSwap": 0.5}
    base.update(
        {
            "digitalocean": {"accessToken": "do-secret-token"},
            "hetzner": {"apiToken": "hz-secret-token"},
            "scaleway": {"organization": "org-1", "secretToken": "scw-secret-token"},
            "aws": {"accessKey": "AKIAFAKE", "secretKey": "aws-secret-key", "securityGroup": "odm"},
        }[provider]
    )
    base["imageSizeMapping"] = [{"maxImages": 50, "slug": "small"}, {"maxImages": 500, "slug": "big"}]
    return deep_merge(base, overrides)


def write_asr(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def run_clusterodm_check(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run clusterodm expecting it to refuse to start (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "clusterodm.main", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
