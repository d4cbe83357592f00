"""Read a clusterodm's `/metrics` with prometheus_client's own parser.

samples = scrape(f"{cluster.admin_url}/metrics")
value(samples, "clusterodm_api_requests_total", route="task_info", status="200")
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""{(sample name, labels): value}; sample names carry their suffix (`_total`, `_bucket`...)."""


def scrape(url: str, auth: tuple[str, str] | None = None) -> Samples:
    """Every sample `url` serves, parsed by prometheus_client (which refuses a malformed text)."""
    reply = httpx.get(url, auth=auth, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a labelled counter that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
