"""A split task sends its submodels to its ``sm-cluster`` (here another simulator node) and waits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pyodm import Node
from pyodm.exceptions import TaskFailedError
from pyodm.types import TaskStatus

from support.images import make_images
from support.simnode import SimNode


def submodels(cluster: SimNode, token: str) -> list[dict]:
    listed = httpx.get(f"{cluster.url}/task/list", params={"token": token}).json()
    params = {"token": token}
    infos = [httpx.get(f"{cluster.url}/task/{t['uuid']}/info", params=params).json() for t in listed]
    return sorted(infos, key=lambda i: i["name"])


def test_split_task_creates_one_task_per_submodel_with_the_token_and_a_seed(
    start_sim: Callable[..., SimNode], tmp_path: Path
) -> None:
    cluster = start_sim("--token", "abc", "-q", "3", "--processing-seconds", "0.3")
    node = start_sim("--processing-seconds", "0.3")
    images = make_images(tmp_path / "imgs", 5)
    options = {"split": 2, "sm-cluster": f"{cluster.url}/?token=abc"}
    task = Node(node.host, node.port, timeout=10).create_task(images, options, name="field")
    task.wait_for_completion(interval=0.1)
    assert task.info().status == TaskStatus.COMPLETED
    made = submodels(cluster, "abc")
    assert [m["name"] for m in made] == ["field submodel 0", "field submodel 1", "field submodel 2"]
    assert [m["imagesCount"] for m in made] == [2, 2, 1]
    assert all(m["status"]["code"] == TaskStatus.COMPLETED.value for m in made)
    assert all("split" not in str(m["options"]) for m in made)  # submodels never split again
    uploads = cluster.upload_requests(made[2]["uuid"])
    assert [u["outcome"] for u in uploads] == ["success"]
    assert sorted(uploads[0]["files"]) == sorted([Path(images[4]).name, "seed.zip"])
    output = task.output()
    assert "Splitting 5 images into 3 submodels" in "".join(output)


def test_a_failed_submodel_fails_the_parent(start_sim: Callable[..., SimNode], tmp_path: Path) -> None:
    cluster = start_sim("-q", "2", "--processing-seconds", "0.2", "--fail-tasks")
    node = start_sim("--processing-seconds", "0.2")
    images = make_images(tmp_path / "imgs", 4)
    task = Node(node.host, node.port, timeout=10).create_task(
        images, {"split": 2, "sm-cluster": cluster.url}, name="field"
    )
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.1)
    info = task.info()
    assert info.status == TaskStatus.FAILED
    assert "did not complete: Cannot process dataset" in info.last_error


def test_no_split_when_the_images_fit_one_submodel(start_sim: Callable[..., SimNode], tmp_path: Path) -> None:
    cluster = start_sim("--processing-seconds", "0.2")
    node = start_sim("--processing-seconds", "0.2")
    images = make_images(tmp_path / "imgs", 2)
    task = Node(node.host, node.port, timeout=10).create_task(
        images, {"split": 2, "sm-cluster": cluster.url}, name="field"
    )
    task.wait_for_completion(interval=0.1)
    assert httpx.get(f"{cluster.url}/task/list").json() == []
