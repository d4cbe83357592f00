"""ODM's split-merge in outline: a split task sends its submodels to the ``sm-cluster`` and waits.

A task with option ``split`` (images per submodel, > 0) and an ``sm-cluster`` URL, holding more
images than ``split``, divides its images in order into ceil(n / split) submodels. For each it
creates a task on the sm-cluster as ODM's LocalRemoteExecutor does, through the ordinary
``init`` (named ``<parent name> submodel <i>``), ``upload`` (the images plus a small
``seed.zip``, standing in for ODM's OpenSfM seed) and ``commit``, with the ``token`` from the
URL's query if it has one. It then polls every submodel until all are finished; one that fails
(or is canceled or gone) fails the parent with a message naming it. Otherwise the parent goes on
to its own processing, the merge. The parent keeps its slot meanwhile, as ODM's does.

This is what lets tests see submodels come back through a proxy's queue (ClusterODM issue 74).
Submodels carry no options (so they never split again) and are not canceled with their parent.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from clusterodm.nodeodm.names import classify_upload
from clusterodm.nodeodm.status import TaskStatus

POLL_SECONDS = 0.2
FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)


class SplitMergeError(Exception):
    """A submodel could not be created or did not complete; the message is the parent's error."""


def plan(options: list[dict[str, Any]], images: int) -> tuple[str, int] | None:
    """``(sm-cluster URL, split)`` when a task with these options and images splits, else None."""
    values = {o.get("name"): o.get("value") for o in options}
    url = str(values.get("sm-cluster") or "")
    try:
        split = int(str(values.get("split")))
    except ValueError:
        return None
    if split <= 0 or images <= split or not url.startswith(("http://", "https://")):
        return None
    return url, split


def seed_zip() -> bytes:
    """A tiny archive in the shape of ODM's seed (its OpenSfM config)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("opensfm/config.yaml", "processes: 1\n")
    return buffer.getvalue()


def _endpoint(url: str) -> tuple[str, dict[str, str]]:
    """The sm-cluster's base URL (no query, no trailing slash) and its token parameter, if any."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    token = parse_qs(parts.query).get("token", [""])[0]
    return base, {"token": token} if token else {}


def _images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and classify_upload(p.name) == "image")


async def run(name: str, images_dir: Path, url: str, split: int, output: list[str]) -> None:
    """Create the submodels on ``url``, wait until all are finished; raise SplitMergeError if one is not
    completed. Progress lines go to ``output`` (the parent's console)."""
    images = await asyncio.to_thread(_images, images_dir)
    count = math.ceil(len(images) / split)
    base, params = _endpoint(url)
    output.append(f"Splitting {len(images)} images into {count} submodels for {base}\n")
    seed = seed_zip()
    async with httpx.AsyncClient(base_url=base, params=params, timeout=60.0) as client:
        uuids = []
        for i in range(count):
            chunk = images[i * split : (i + 1) * split]
            uuid = await _create(client, f"{name} submodel {i}", chunk, seed)
            output.append(f"Submodel {i}: task {uuid} with {len(chunk)} images\n")
            uuids.append(uuid)
        await _wait_all(client, uuids, output)


async def _create(client: httpx.AsyncClient, name: str, images: list[Path], seed: bytes) -> str:
    try:
        init = (await client.post("/task/new/init", files=[("name", (None, name))])).json()
        if "uuid" not in init:
            raise SplitMergeError(f"{name}: init refused: {init.get('error', init)}")
        uuid = str(init["uuid"])
        files = [("images", (p.name, await asyncio.to_thread(p.read_bytes))) for p in images]
        files.append(("images", ("seed.zip", seed)))
        upload = (await client.post(f"/task/new/upload/{uuid}", files=files)).json()
        if upload != {"success": True}:
            raise SplitMergeError(f"{name}: upload refused: {upload.get('error', upload)}")
        commit = (await client.post(f"/task/new/commit/{uuid}")).json()
        if "uuid" not in commit:
            raise SplitMergeError(f"{name}: commit refused: {commit.get('error', commit)}")
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        raise SplitMergeError(f"{name}: cannot reach the sm-cluster {client.base_url}: {exc!r}") from None
    return uuid


async def _wait_all(client: httpx.AsyncClient, uuids: list[str], output: list[str]) -> None:
    pending = dict.fromkeys(uuids)
    while pending:
        await asyncio.sleep(POLL_SECONDS)
        for uuid in list(pending):
            try:
                answer = (await client.get(f"/task/{uuid}/info")).json()
            except (httpx.HTTPError, json.JSONDecodeError):
                continue  # the cluster may be restarting; ODM keeps polling too
            code = answer.get("status", {}).get("code") if isinstance(answer, dict) else None
            if code is None:
                raise SplitMergeError(f"Submodel task {uuid} is gone: {answer}")
            if code not in FINISHED:
                continue
            if code != TaskStatus.COMPLETED:
                canceled = "canceled" if code == TaskStatus.CANCELED else ""
                reason = answer["status"].get("errorMessage", canceled)
                name = answer.get("name")
                raise SplitMergeError(f"Submodel task {uuid} ({name}) did not complete: {reason}")
            output.append(f"Submodel task {uuid} completed\n")
            del pending[uuid]
