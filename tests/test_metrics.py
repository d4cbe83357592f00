"""`GET /metrics` of a real clusterodm in front of a simulator node, read with prometheus_client's parser.

One PyODM task runs through the cluster; the counters must move by exactly what the test did
(requests, upload bytes), the node's state must show, no label may carry a uuid or a token, and
the admin password guards the figures unless `--metrics-public` serves them on the API port.
The Grafana dashboard shipped in docker/grafana may only use names the app exports.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from pyodm import Node
from pyodm.utils import MultipartEncoder

from clusterodm.config import Config
from clusterodm.services import Cluster
from support.admin_env import PASSWORD
from support.clusterodm import ClusterODM
from support.images import make_images
from support.metrics import Samples, value
from support.metrics import scrape as support_scrape
from support.multipart import multipart
from support.simnode import SimNode
from support.waiting import wait_until

TOKEN = "Metrics-Token-6d1f"
IMAGES = 5
DASHBOARD = Path(__file__).resolve().parents[1] / "docker" / "grafana" / "clusterodm.json"
UUID_LIKE = re.compile(r"\w+-\w+-\w+-\w+-\w+|[0-9a-f]{32}", re.IGNORECASE)

ADMIN = ("admin", PASSWORD)


def scrape(url: str, auth: tuple[str, str] | None = ADMIN) -> Samples:
    return support_scrape(url, auth)


def pyodm_upload_bytes(paths: list[str]) -> int:
    """What PyODM sends as upload bodies: one multipart request per file (its boundary has a fixed length)."""
    total = 0
    for path in paths:
        data = Path(path).read_bytes()
        mime = mimetypes.guess_type(path)[0] or "image/jpg"
        total += MultipartEncoder(fields={"images": [(os.path.basename(path), data, mime)]}).len
    return total


@dataclass
class Ran:
    node: SimNode
    cluster: ClusterODM
    before: Samples
    after: Samples
    images: list[str]
    uuid: str


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """A cluster with one node, before and after a PyODM task ran to COMPLETED."""
    workdir = tmp_path_factory.mktemp("metrics")
    flags = ("--admin-pass", PASSWORD, "--metrics-public", "--token", TOKEN)
    with (
        SimNode(workdir, "--processing-seconds", "0.2", "--asset-size", "1024") as node,
        ClusterODM(workdir, *flags, nodes=[node]) as cluster,
    ):
        wait_until(lambda: _online(cluster), 20, "the node online")
        images = make_images(workdir / "imgs", IMAGES, size=4096)
        before = scrape(f"{cluster.admin_url}/metrics")
        task = Node(cluster.host, cluster.port, token=TOKEN).create_task(images, {"dsm": True}, name="m")
        task.wait_for_completion(interval=0.1)
        wait_until(
            lambda: value(scrape(f"{cluster.admin_url}/metrics"), "clusterodm_forwards_in_flight") == 0
        )
        after = scrape(f"{cluster.admin_url}/metrics")
        yield Ran(node, cluster, before, after, images, task.uuid)


def _online(cluster: ClusterODM) -> bool:
    return value(scrape(f"{cluster.admin_url}/metrics"), "clusterodm_nodes_online") == 1


def delta(ran: Ran, name: str, **labels: str) -> float:
    return value(ran.after, name, **labels) - value(ran.before, name, **labels)


def test_task_creation_counts(ran: Ran) -> None:
    """init + one upload per image + commit, all answered 200; the task handed to a node once."""
    assert delta(ran, "clusterodm_api_requests_total", route="task_new", status="200") == IMAGES + 2
    assert delta(ran, "clusterodm_forwards_completed_total") == 1
    assert delta(ran, "clusterodm_forwards_failed_total") == 0
    assert delta(ran, "clusterodm_forward_retries_total") == 0
    assert value(ran.after, "clusterodm_forwards_in_flight") == 0


def test_upload_bytes_are_the_bytes_sent(ran: Ran) -> None:
    sent = pyodm_upload_bytes(ran.images)
    assert delta(ran, "clusterodm_upload_received_bytes_total") == sent
    # The node got every file once, in multipart bodies with the task's init fields.
    files = sum(Path(p).stat().st_size for p in ran.images)
    forwarded = delta(ran, "clusterodm_upload_forwarded_bytes_total")
    assert files < forwarded < files + 1024 + 300 * IMAGES


def test_a_raw_upload_counts_exactly_its_body(ran: Ran) -> None:
    cluster = ran.cluster
    base = f"{cluster.url}/task/new"
    uuid = httpx.post(f"{base}/init?token={TOKEN}", files={"name": (None, "raw")}).json()["uuid"]
    body, content_type = multipart([("images", "raw.jpg", os.urandom(10_000))])
    start = value(scrape(f"{cluster.admin_url}/metrics"), "clusterodm_upload_received_bytes_total")
    reply = httpx.post(
        f"{base}/upload/{uuid}?token={TOKEN}", content=body, headers={"Content-Type": content_type}
    )
    assert reply.json() == {"success": True}
    end = value(scrape(f"{cluster.admin_url}/metrics"), "clusterodm_upload_received_bytes_total")
    assert end - start == len(body)
    httpx.post(f"{cluster.url}/task/remove?token={TOKEN}", data={"uuid": uuid})


def test_routed_requests_count_per_node(ran: Ran) -> None:
    """Three info polls: three requests of the task_info class, three latency samples of the node."""
    cluster, node_label = ran.cluster, f"{ran.node.host}:{ran.node.port}"
    task = Node(cluster.host, cluster.port, token=TOKEN).get_task(ran.uuid)
    start = scrape(f"{cluster.admin_url}/metrics")
    for _ in range(3):
        assert task.info().status.value == 40
    end = scrape(f"{cluster.admin_url}/metrics")
    info = ("clusterodm_api_requests_total", {"route": "task_info", "status": "200"})
    assert value(end, info[0], **info[1]) - value(start, info[0], **info[1]) == 3
    count = "clusterodm_routed_request_seconds_count"
    assert value(end, count, node=node_label) - value(start, count, node=node_label) == 3
    inf = value(end, "clusterodm_routed_request_seconds_bucket", node=node_label, le="+Inf")
    assert inf == value(end, count, node=node_label)
    assert value(end, "clusterodm_routed_request_seconds_sum", node=node_label) > 0


def test_node_state_and_single_replica(ran: Ran) -> None:
    """The node's figures come from its polls, read at scrape time: once a poll saw the task
    finished, its slot is free again without any request to clusterodm in between."""
    node_label = f"{ran.node.host}:{ran.node.port}"

    def all_free() -> Samples | None:
        now = scrape(f"{ran.cluster.admin_url}/metrics")
        free = value(now, "clusterodm_node_free_slots", node=node_label)
        return now if free == value(now, "clusterodm_node_slots", node=node_label) else None

    after = wait_until(all_free, 10, "the node's slots free again")
    assert isinstance(after, dict)
    assert value(after, "clusterodm_nodes") == 1
    assert value(after, "clusterodm_node_online", node=node_label) == 1
    assert value(after, "clusterodm_node_locked", node=node_label) == 0
    slots = value(after, "clusterodm_node_slots", node=node_label)
    assert slots >= 1
    assert value(after, "clusterodm_node_tasks", node=node_label) == 0
    assert value(after, "clusterodm_free_slots") == slots
    assert value(after, "clusterodm_queue_length", queue="nodes") == 0
    assert value(after, "clusterodm_replicas_alive") == 1
    assert value(after, "clusterodm_leader") == 1
    assert value(after, "clusterodm_store_errors_total") == 0


def test_no_label_is_a_uuid_or_a_secret(ran: Ran) -> None:
    for name, labels in ran.after:
        for key, label in labels:
            assert not UUID_LIKE.search(label), (name, key, label)
            assert TOKEN not in label and PASSWORD not in label, (name, key)
    text = httpx.get(f"{ran.cluster.admin_url}/metrics", auth=("admin", PASSWORD)).text
    assert ran.uuid not in text and TOKEN not in text


def test_admin_port_needs_the_password(ran: Ran) -> None:
    url = f"{ran.cluster.admin_url}/metrics"
    refused = httpx.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="ClusterODM"'
    assert httpx.get(url, auth=("admin", "wrong")).status_code == 401


def test_metrics_public_serves_the_api_port_without_token(ran: Ran) -> None:
    samples = scrape(f"{ran.cluster.url}/metrics", auth=None)
    assert value(samples, "clusterodm_nodes") == 1
    route = {"route": "metrics", "status": "200"}
    assert (
        value(scrape(f"{ran.cluster.url}/metrics", auth=None), "clusterodm_api_requests_total", **route) >= 1
    )


def test_without_metrics_public_the_api_port_does_not_serve_them(tmp_path: Path) -> None:
    with ClusterODM(tmp_path) as cluster:
        assert httpx.get(f"{cluster.url}/metrics").json() == {"error": "Cannot handle /metrics"}
        assert value(scrape(f"{cluster.admin_url}/metrics", auth=None), "clusterodm_nodes") == 0


def test_no_metrics_serves_none(tmp_path: Path) -> None:
    with ClusterODM(tmp_path, "--no-metrics", "--metrics-public") as cluster:
        assert httpx.get(f"{cluster.admin_url}/metrics").status_code == 404
        assert httpx.get(f"{cluster.url}/metrics").json() == {"error": "Cannot handle /metrics"}


# -- route classes, in-process -------------------------------------------------------------------

TASK = "0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11"


Counts = dict[tuple[str, int], int]


def counts_after(tmp_path: Path, requests: list[tuple[str, str]], **config: Any) -> Counts:
    """Send `requests` ((method, url)) through the real front of a fresh cluster; its request counts."""

    async def main() -> Counts:
        cluster = await Cluster.open(Config(data_dir=tmp_path / "data", **config))
        try:
            transport = httpx.ASGITransport(app=cluster.proxy_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
                for method, url in requests:
                    await client.request(method, url)
            return dict(cluster.metrics.requests.counts)
        finally:
            await cluster.close()

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_route_classes_and_statuses(tmp_path: Path) -> None:
    token = "?token=abc"
    requests = [
        ("GET", f"/info{token}"),
        ("GET", "/info"),  # no token: 401
        ("GET", f"/TASK/LIST/{token}"),  # Express matching: the same route
        ("GET", f"/task/{TASK}/info{token}"),
        ("GET", f"/task/{TASK}/output/{token}"),
        ("GET", f"/task/{TASK}/download/all.zip{token}"),
        ("GET", f"/task/{TASK}/info"),  # refused before the task route: 401, still task_info
        ("GET", f"/task/{TASK}/a/../b{token}"),
        ("POST", f"/task/new/init{token}"),
        ("POST", f"/task/new/upload/{TASK}{token}"),
        ("POST", f"/task/cancel{token}"),
        ("OPTIONS", "/info"),
        ("GET", "/app.js"),
        ("GET", "/auth/info"),
        ("GET", f"/nope{token}"),
    ]
    assert counts_after(tmp_path, requests, token="abc") == {
        ("info", 200): 1,
        ("info", 401): 1,
        ("task_list", 200): 1,
        ("task_info", 200): 1,
        ("task_output", 200): 1,
        ("task_download", 200): 1,
        ("task_info", 401): 1,
        ("task_other", 200): 1,
        ("task_new", 200): 2,
        ("task_action", 200): 1,
        ("preflight", 200): 1,
        ("static", 200): 1,
        ("auth", 200): 1,
        ("other", 200): 1,
    }


def test_no_metrics_counts_nothing(tmp_path: Path) -> None:
    assert counts_after(tmp_path, [("GET", "/info"), ("GET", f"/task/{TASK}/info")], metrics=False) == {}


# -- the Grafana dashboard ----------------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


LABEL_VALUES = re.compile(r"label_values\((.+),\s*\w+\)")
"""A query variable's `label_values(<selector>, <label>)`: its selector is PromQL."""


def dashboard_expressions(data: object) -> list[str]:
    """Every `expr` (panel targets) and the selectors of the query variables in the dashboard."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, item in data.items():
            if key == "expr" and isinstance(item, str):
                found.append(item)
            elif (
                key in ("definition", "query") and isinstance(item, str) and item.startswith("label_values(")
            ):
                match = LABEL_VALUES.fullmatch(item)
                assert match is not None, item
                found.append(match[1])
            else:
                found += dashboard_expressions(item)
    elif isinstance(data, list):
        for item in data:
            found += dashboard_expressions(item)
    return found


def metric_names(expression: str) -> set[str]:
    """Metric names an expression selects, parsed as PromQL (Grafana's variables filled in first)."""
    for variable, replacement in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, replacement)
    expression = re.sub(r"\$\{?\w+\}?", ".*", expression)  # label filters like node=~"$node"
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def test_every_dashboard_expression_names_an_exported_metric(ran: Ran) -> None:
    exported = {name for name, _ in ran.after}
    data = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(data)
    assert len(expressions) >= 10
    used: set[str] = set()
    for expression in expressions:
        names = metric_names(expression)
        assert names, expression
        assert names <= exported, (expression, names - exported)
        used |= names
    # The dashboard shows every group of figures the app exports.
    for prefix in ("clusterodm_api_requests", "clusterodm_routed", "clusterodm_upload", "clusterodm_node_"):
        assert any(n.startswith(prefix) for n in used), prefix
