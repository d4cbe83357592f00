"""The replica deployments (docker/compose.replicas.yml with nginx, docker/k8s/) checked against
the app without a container engine or a cluster: every manifest parses, the probes name paths the
app answers on its API port (a real clusterodm is asked), the ports agree with the app's default,
and the database URL comes from a Secret that exists. The nginx configuration is checked by nginx
itself (`nginx -t`), with the compose service names pointed at loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clusterodm.config import Config
from clusterodm.proxy.probes import PATHS
from support.clusterodm import ClusterODM
from support.nginx import nginx_binary

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
                assert doc["metadata"].get("name"), path
                docs.append(doc)
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} manifests"
    return found[0]


def container() -> dict[str, Any]:
    (main,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(main)


def port_number(port: int | str, ports: list[dict[str, Any]]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (named,) = [p for p in ports if p.get("name") == port]
    return int(named["containerPort"])


def probes() -> dict[str, tuple[str, int]]:
    """readiness/liveness -> (path, port number), as the Deployment declares them."""
    main = container()
    out = {}
    for kind in ("readinessProbe", "livenessProbe"):
        get = main[kind]["httpGet"]
        out[kind] = (get["path"], port_number(get["port"], main["ports"]))
    return out


def test_every_manifest_parses_and_the_deployment_runs_three_replicas() -> None:
    kinds = sorted(d["kind"] for d in manifests())
    assert kinds == ["Deployment", "Secret", "Service"]
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service")["spec"]["selector"].items() <= labels.items()


def test_probes_use_the_app_paths_and_port() -> None:
    found = probes()
    assert found["readinessProbe"] == ("/readyz", Config().port)
    assert found["livenessProbe"] == ("/healthz", Config().port)
    assert {path for path, _ in found.values()} == set(PATHS)
    main = container()
    assert "--port" not in main.get("args", [])  # the app's default port, which the probes name
    service_port = one("Service")["spec"]["ports"][0]
    assert port_number(service_port["targetPort"], main["ports"]) == Config().port


def test_the_database_url_and_admin_password_come_from_the_secret() -> None:
    env = {e["name"]: e for e in container()["env"]}
    secret = one("Secret")
    for name in ("CLUSTERODM_DB", "ADMIN_PASS"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert secret["stringData"][env["CLUSTERODM_DB"]["valueFrom"]["secretKeyRef"]["key"]].startswith(
        "postgresql://"
    )
    # Each pod tells the others its own address (pod IP, API port).
    assert env["CLUSTERODM_REPLICA_ADDRESS"]["value"] == f"http://$(POD_IP):{Config().port}"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    args = container()["args"]
    assert args[args.index("--admin-pass") + 1] == "$(ADMIN_PASS)"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterODM]:
    with ClusterODM(tmp_path_factory.mktemp("probes"), "--token", "secret") as cluster:
        yield cluster


def test_the_probe_paths_answer_on_the_api_port_without_token(running: ClusterODM) -> None:
    assert running.port != Config().port  # the test's free port: the manifests' port is the default
    for kind, (path, _) in probes().items():
        deadline = time.monotonic() + 10
        reply = httpx.get(f"{running.url}{path}", timeout=5)
        while reply.status_code != 200 and time.monotonic() < deadline:  # ready once registered
            time.sleep(0.1)
            reply = httpx.get(f"{running.url}{path}", timeout=5)
        assert reply.status_code == 200, (kind, path, reply.text)
        assert reply.json()["status"] in ("ok", "ready")


# -- docker compose with nginx -------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.replicas.yml").read_text())
    return loaded


def replicas() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if name.startswith("clusterodm")}


def test_compose_runs_two_replicas_on_postgres_behind_nginx() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert [name for name in services if name.startswith("nodeodm")] == ["nodeodm-1", "nodeodm-2"]
    found = replicas()
    assert len(found) == 2
    addresses = set()
    for name, service in found.items():
        env = service["environment"]
        url = r"postgresql://clusterodm:\$\{POSTGRES_PASSWORD\}@postgres:5432/clusterodm"
        assert re.fullmatch(url, env["CLUSTERODM_DB"])
        assert env["CLUSTERODM_REPLICA_ADDRESS"] == f"http://{name}:{Config().port}"
        addresses.add(env["CLUSTERODM_REPLICA_ADDRESS"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert f":{Config().port}/" in " ".join(service["healthcheck"]["test"])
        data_dir = service["command"][service["command"].index("--data-dir") + 1]
        mounts = [v for v in service["volumes"] if v.startswith("./nodes.replicas.json:")]
        assert mounts == [f"./nodes.replicas.json:{data_dir}/nodes.json"]
        assert re.search(r"\$\{CLUSTERODM_ADMIN_PASS:\?", " ".join(service["command"]))
    assert len(addresses) == 2
    nodes = json.loads((DOCKER / "nodes.replicas.json").read_text())
    assert [n["hostname"] for n in nodes] == ["nodeodm-1", "nodeodm-2"]
    nginx = services["nginx"]
    assert nginx["ports"] == [f"{Config().port}:{Config().port}"]
    (mount,) = nginx["volumes"]
    source, target, _ = mount.split(":")
    assert (DOCKER / source).is_file() and target == "/etc/nginx/nginx.conf"
    assert set(nginx["depends_on"]) == set(found)


def test_nginx_config_balances_over_the_compose_replicas() -> None:
    conf = (DOCKER / "nginx.replicas.conf").read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{(.*?)\}", conf, re.S))
    for body in upstreams.values():
        servers = re.findall(r"server ([\w.-]+):(\d+)", body)
        assert sorted(servers) == sorted((name, str(Config().port)) for name in replicas())
    assert "hash" not in upstreams["clusterodm"]  # round-robin, no stickiness
    assert re.search(r"location / \{\s*proxy_pass http://clusterodm;", conf)
    assert re.search(rf"listen {Config().port};", conf)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx-light not installed")
    conf = (DOCKER / "nginx.replicas.conf").read_text()
    for name in replicas():
        conf = conf.replace(f"{name}:", "127.0.0.1:")
    conf = conf.replace("listen 3000;", "listen 127.0.0.1:3000;")
    temp = "".join(
        f"    {kind}_temp_path {tmp_path}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\n" + conf.replace("http {\n", "http {\n" + temp, 1)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert checked.returncode == 0, checked.stderr
