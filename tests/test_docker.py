"""What can be checked of the container files without a Docker engine."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_and_runs_the_console_script() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith("AS build")
    assert any(w == "RUN" and "maturin build" in r and "--locked" in r for w, r in instructions)
    entry = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    assert entry == [["clusterodm"]]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["clusterodm"] == "clusterodm.main:main"
    # The runtime stage drops root and exposes ClusterODM's three ports.
    runtime = instructions[[i for i, (w, _) in enumerate(instructions) if w == "FROM"][1] :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    exposed = {p for word, rest in runtime if word == "EXPOSE" for p in rest.split()}
    assert exposed == {"3000", "8080", "10000"}
    assert any(word == "VOLUME" for word, _ in runtime)
    # Every path the build copies exists in the repository.
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), src


def test_compose_runs_clusterodm_with_a_nodeodm_node() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["nodeodm"]["image"].startswith("opendronemap/nodeodm")
    app = services["clusterodm"]
    assert app["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    assert {p.split(":")[0] for p in app["ports"]} == {"3000", "8080", "10000"}
    mounts = [v for v in app["volumes"] if v.startswith("./nodes.json:")]
    assert mounts and mounts[0].endswith("/data/nodes.json")
    data_dir = app["command"][app["command"].index("--data-dir") + 1]
    assert mounts[0].split(":")[1] == f"{data_dir}/nodes.json"
    # The admin ports are published, so the compose file must set a password.
    assert "--admin-pass" in app["command"]
    assert re.search(r"\$\{CLUSTERODM_ADMIN_PASS:\?", " ".join(app["command"]))


def test_bundled_nodes_json_names_the_compose_node() -> None:
    nodes = json.loads((DOCKER / "nodes.json").read_text())
    assert nodes == [{"hostname": "nodeodm", "port": 3000, "token": ""}]
