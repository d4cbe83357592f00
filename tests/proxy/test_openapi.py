"""`docs/openapi.yaml` against a live clusterodm with simulator nodes, checked by schemathesis.

Every documented operation gets generated requests (a few per operation, schema-valid and not),
plus the document's examples; the example task uuid is a real task made through the cluster, so
the routed info/output/download answers are checked too. Each answer must be no 5xx, arrive within
the request timeout, and match the document: a documented status code, a documented content
type, and a body valid against the response schema (NodeODM's 200 `{"error": ...}` included).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from pyodm import Node
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.clusterodm import ClusterODM
from support.images import make_images
from support.paths import REPO
from support.simnode import SimNode

from .conftest import FAST

DOCUMENT = REPO / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
TASK_UUID: str = SPEC["components"]["parameters"]["TaskUuid"]["example"]
"""The document's example task uuid: the live cluster gets a completed task with this uuid."""
REQUEST_TIMEOUT_S = 10.0


def documented_status_always(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Even schemathesis's request-shape probes (odd methods, broken bodies), which the built-in
    conformance checks skip, get an answer the document lists: NodeODM's convention is a JSON
    error with HTTP 200, never a bare 4xx from the framework."""
    documented = {int(code) for code in case.operation.responses.status_codes}
    assert response.status_code in documented, (
        f"{case.method} {case.formatted_path}: HTTP {response.status_code} {response.text[:200]!r}"
    )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    documented_status_always,
]

schema = schemathesis.openapi.from_dict(SPEC)
schema.config.update(request_timeout=REQUEST_TIMEOUT_S)


@pytest.fixture(scope="module")
def live_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterODM]:
    """Two simulator nodes behind clusterodm, and a completed task with the example uuid."""
    workdir = tmp_path_factory.mktemp("openapi")
    images = make_images(workdir / "images", 2)
    flags = (*FAST, "--asset-size", "20000")
    with SimNode(workdir, *flags, name="a") as a, SimNode(workdir, *flags, name="b") as b:
        with ClusterODM(workdir, nodes=[a, b]).start(wait_nodes=2) as cluster:
            node = Node(cluster.host, cluster.port)
            task = node.create_task(images, {"dsm": True}, name="openapi", task_uuid=TASK_UUID)
            task.wait_for_completion(interval=0.1)
            yield cluster


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=REQUEST_TIMEOUT_S * 1000,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_matches_document(case: schemathesis.Case, live_cluster: ClusterODM) -> None:
    case.call_and_validate(base_url=live_cluster.url, checks=CHECKS)


def test_framework_refusals_are_json_errors(live_cluster: ClusterODM) -> None:
    """What schemathesis found: a method no route takes, a path no route pattern matches (a
    newline), and a multipart body without a boundary got Starlette's plain-text 405/404/400."""
    url = live_cluster.url
    for method, path in (("TRACE", "/task/cancel"), ("PROPFIND", "/info"), ("GET", "/a%0Ab")):
        reply = httpx.request(method, url + path)
        assert (reply.status_code, reply.headers["content-type"]) == (200, "application/json")
        assert reply.json()["error"].startswith("Cannot handle /"), (method, path)
    headers = {"content-type": "multipart/form-data"}
    reply = httpx.post(f"{url}/task/cancel", headers=headers, content=b"uuid=x")
    assert reply.status_code == 200
    assert reply.json() == {"error": "Malformed multipart body: Missing boundary in multipart."}


def test_document_is_valid_openapi() -> None:
    """The document itself loads as OpenAPI 3 and names every route of the API (spec 1.4, 2.2)."""
    assert set(SPEC["paths"]) == {
        "/info",
        "/options",
        "/cache/clear",
        "/auth/info",
        "/task/new/init",
        "/task/new/upload/{uuid}",
        "/task/new/commit/{uuid}",
        "/task/new",
        "/task/list",
        "/task/{uuid}/info",
        "/task/{uuid}/output",
        "/task/{uuid}/download/{asset}",
        "/task/cancel",
        "/task/remove",
        "/task/restart",
    }
