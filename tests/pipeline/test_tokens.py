"""Per-token limits from `--limits FILE` (local provider): image count, concurrent tasks, option limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pyodm import Node

from pipeline.flow import tmp_entries
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode
from support.waiting import wait_until

Stack = Callable[..., tuple[list[SimNode], ClusterODM]]
TOO_MANY = (
    "Max images count exceeded: this account can process up to 3 images per task "
    "(GCP and other .txt files, .zip archives and align.* files do not count)."
)
MAX_CONCURRENT = (
    "Reached maximum number of concurrent tasks: 1. Please wait until other tasks have finished, "
    "then restart the task."
)


def limits_file(tmp_path: Path, limits: dict[str, Any]) -> str:
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(limits))
    return str(path)


def upload(cluster: ClusterODM, uuid: str, *paths: str) -> dict[str, Any]:
    files = [("images", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in paths]
    return httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=files, timeout=10).json()


def single_shot(cluster: ClusterODM, paths: list[str]) -> dict[str, Any]:
    files = [("images", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in paths]
    return httpx.post(f"{cluster.url}/task/new", files=files, timeout=10).json()


def test_image_limit_exact_boundary(stack: Stack, tmp_path: Path) -> None:
    _, cluster = stack("--limits", limits_file(tmp_path, {"maxImages": 3}))
    images = make_images(tmp_path / "imgs", 4)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    assert upload(cluster, uuid, *images[:2]) == {"success": True}
    assert upload(cluster, uuid, images[2]) == {"success": True}  # exactly 3: fine
    assert upload(cluster, uuid, images[3]) == {"error": TOO_MANY}  # the 4th: refused, not stored
    assert sorted(p.name for p in (cluster.tmp_dir / uuid / "files").glob("*.JPG")) == sorted(
        Path(p).name for p in images[:3]
    )
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    Node(cluster.host, cluster.port).get_task(uuid).wait_for_completion(interval=0.2)
    assert Node(cluster.host, cluster.port).get_task(uuid).info().images_count == 3
    # Single shot: 3 pass, 4 are refused while streaming.
    assert "uuid" in single_shot(cluster, images[:3])
    assert single_shot(cluster, images) == {"error": TOO_MANY}
    wait_until(lambda: tmp_entries(cluster) == [], 10, "tmp empty")


def test_image_limit_checked_again_at_commit(stack: Stack, tmp_path: Path) -> None:
    """Uploads allowed under one limit, commit after a restart with a lower one: commit refuses."""
    _, cluster = stack("--limits", limits_file(tmp_path, {"maxImages": 3}))
    images = make_images(tmp_path / "imgs", 3)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    assert upload(cluster, uuid, *images) == {"success": True}
    cluster.stop()
    limits_file(tmp_path, {"maxImages": 2})
    cluster.start(wait_nodes=3)
    reply = httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json()
    assert reply == {"error": "3 images uploaded, but this node can only process up to 2."}
    assert tmp_entries(cluster) == []


def test_max_concurrent_tasks_counts_real_states(stack: Stack, tmp_path: Path) -> None:
    slow = ("--processing-seconds", "2", "--asset-size", "1024")
    _, cluster = stack(
        "--no-queue",
        "--limits",
        limits_file(tmp_path, {"maxConcurrentTasks": 1}),
        node_flags=[slow, slow, slow],
    )
    images = make_images(tmp_path / "imgs", 2)
    api = Node(cluster.host, cluster.port)
    first = api.create_task(images)
    assert httpx.post(f"{cluster.url}/task/new/init").json() == {"error": MAX_CONCURRENT}
    first.wait_for_completion(interval=0.1)
    second = api.create_task(images)  # the finished task freed its slot
    assert second.info().status.value in (10, 20)
    second.wait_for_completion(interval=0.1)
    assert tmp_entries(cluster) == []


LIMITS_WITH_OPTIONS = {
    "options": {
        "split": {"remove": True},
        "orthophoto-resolution": {
            "between": {"min": 2, "max": 10, "max_if_equal_to": 5},
            "domain": "float: 2 <= x <= 10",
        },
        "dsm": {"assure": True, "value": "true"},
    }
}


def test_option_limits_reach_the_node(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack("--limits", limits_file(tmp_path, LIMITS_WITH_OPTIONS))
    images = make_images(tmp_path / "imgs", 2)
    task = Node(cluster.host, cluster.port).create_task(
        images, {"orthophoto-resolution": 50, "split": 5, "fast-orthophoto": True}
    )
    task.wait_for_completion(interval=0.2)
    owner = next(n for n in nodes if task.uuid in [t["uuid"] for t in httpx.get(f"{n.url}/task/list").json()])
    options = {
        o["name"]: o["value"] for o in httpx.get(f"{owner.url}/task/{task.uuid}/info").json()["options"]
    }
    assert options["orthophoto-resolution"] == 10
    assert options["dsm"] is True
    assert options["fast-orthophoto"] is True
    assert "split" not in options and "sm-cluster" not in options


def test_options_through_proxy_show_the_limited_list(stack: Stack, tmp_path: Path) -> None:
    nodes, cluster = stack("--limits", limits_file(tmp_path, LIMITS_WITH_OPTIONS))
    direct = {o["name"]: o for o in httpx.get(f"{nodes[0].url}/options").json()}
    shown = {o["name"]: o for o in httpx.get(f"{cluster.url}/options").json()}
    assert "split" in direct and "max-concurrency" in direct
    assert "split" not in shown and "max-concurrency" not in shown
    assert shown["orthophoto-resolution"]["domain"] == "float: 2 <= x <= 10"
    assert shown["dsm"]["value"] == "true"
    assert set(shown) == set(direct) - {"split", "max-concurrency"}


def test_retried_upload_is_not_a_second_image(stack: Stack, tmp_path: Path) -> None:
    """A client that missed the answer to an upload sends the same file again: it counts once, even
    at the image limit; a different file under the same name is refused there like any other."""
    _, cluster = stack("--limits", limits_file(tmp_path, {"maxImages": 2}))
    images = make_images(tmp_path / "imgs", 3)
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    assert upload(cluster, uuid, images[0]) == {"success": True}
    assert upload(cluster, uuid, images[1]) == {"success": True}
    assert upload(cluster, uuid, images[1]) == {"success": True}  # the retry, at the limit
    assert upload(cluster, uuid, images[2]) == {"error": TOO_MANY.replace("3", "2")}
    impostor = ("images", (Path(images[1]).name, b"other bytes", "image/jpeg"))
    reply = httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=[impostor], timeout=10).json()
    assert reply == {"error": TOO_MANY.replace("3", "2")}
    stored = sorted(p.name for p in (cluster.tmp_dir / uuid / "files").iterdir())
    assert stored == sorted(Path(p).name for p in images[:2])
    assert httpx.post(f"{cluster.url}/task/new/commit/{uuid}").json() == {"uuid": uuid}
    task = Node(cluster.host, cluster.port).get_task(uuid)
    task.wait_for_completion(interval=0.2)
    assert task.info().images_count == 2
    wait_until(lambda: tmp_entries(cluster) == [], 10, "tmp empty")


def test_repeats_and_renames_without_a_limit(stack: Stack, tmp_path: Path) -> None:
    """A repeat is dropped; a same-named, different file is NodeODM's rename, not a repeat;
    two same-named files in one request leave one file, as on NodeODM (spec 9.4)."""
    _, cluster = stack()
    uuid = httpx.post(f"{cluster.url}/task/new/init").json()["uuid"]
    first = ("images", ("a.jpg", b"first", "image/jpeg"))
    assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=[first]).json() == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=[first]).json() == {"success": True}
    other = ("images", ("a.jpg", b"second", "image/jpeg"))
    twice = [("images", ("b.jpg", b"same", "image/jpeg"))] * 2
    assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=[other]).json() == {"success": True}
    assert httpx.post(f"{cluster.url}/task/new/upload/{uuid}", files=twice).json() == {"success": True}
    stored = {p.name: p.read_bytes() for p in (cluster.tmp_dir / uuid / "files").glob("*.jpg")}
    assert stored == {"a.jpg": b"first", "a_.jpg": b"second", "b.jpg": b"same"}
