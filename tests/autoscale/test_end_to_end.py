"""Whole flow through a clusterodm process: every static node locked -> a machine takes the task.

Needs the task pipeline (clusterodm.pipeline) and the proxy mounting POST /commit and the S3
shortcut; the fake docker-machine is found on the process' PATH.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pyodm import Node

from autoscale.asrkit import FakeMachines, MotoS3, asr_config, write_asr
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode
from support.waiting import wait_until


def test_task_runs_on_an_autoscaled_machine(tmp_path: Path, fake_dm: FakeMachines, moto_s3: MotoS3) -> None:
    bucket = moto_s3.create_bucket("odm-results")
    config = asr_config(s3={"endpoint": moto_s3.url, "bucket": bucket}, commitCleanupDelay=0.2)
    asr = write_asr(tmp_path / "asr.json", config)
    with SimNode(tmp_path, "--processing-seconds", "0.2") as static:
        cluster = ClusterODM(tmp_path, env=fake_dm.env)
        cluster.flags += ["--asr", str(asr), "--public-address", cluster.url]
        cluster.data_dir.mkdir(parents=True, exist_ok=True)
        nodes = [{"hostname": static.host, "port": static.port, "token": "", "locked": True}]
        (cluster.data_dir / "nodes.json").write_text(json.dumps(nodes))
        with cluster:
            cluster.wait_online(1)
            assert "Can write to S3" in cluster.log() and "Found docker-machine executable" in cluster.log()
            # Nobody but the machine may call the webhook.
            r = httpx.post(f"{cluster.url}/commit", json={"uuid": "x"}, timeout=5)
            assert r.status_code == 401

            images = [str(tmp_path / n) for n in make_images(tmp_path, 3)]
            task = Node(cluster.host, cluster.port).create_task(images, {"dsm": True})
            task.wait_for_completion(interval=0.2)
            assert task.info().status.value == 40

            created = fake_dm.commands("create")
            assert len(created) == 1 and created[0][-1].startswith("clusterodm-3-")
            wait_until(lambda: fake_dm.machines() == {}, 20, "machine removed after the webhook")
            assert fake_dm.commands("rm")[-1] == ["rm", "-y", "-f", created[0][-1]]
            assert static.log().count("/task/new") == 0  # the locked node got nothing

            info = task.info(with_output=0)  # from the durable task table now
            assert info.status.value == 40 and info.images_count == 3 and info.output
            download = httpx.get(f"{cluster.url}/task/{task.uuid}/download/all.zip", timeout=5)
            assert download.status_code in (302, 307)
            assert download.headers["location"] == f"{moto_s3.url}/{bucket}/{task.uuid}/all.zip"
