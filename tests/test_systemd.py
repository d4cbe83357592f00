"""`docker/systemd/clusterodm.service`: the settings operators rely on, checked as systemd reads them."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterodm.config import build_parser
from support.paths import REPO, VENV_BIN

UNIT = REPO / "docker" / "systemd" / "clusterodm.service"


def _unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd allows a key more than once, unlike configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a unit file line: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_service_runs_as_its_own_user_with_state_in_var_lib_and_restarts_on_failure() -> None:
    unit = _unit(UNIT.read_text())
    service = unit["Service"]
    assert service["User"] == ["clusterodm"] and service["Group"] == ["clusterodm"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a config error: restarting cannot help
    assert service["StateDirectory"] == ["clusterodm"]  # /var/lib/clusterodm, owned by the user

    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].startswith("/") and argv[0].endswith("/clusterodm")
    args = build_parser().parse_args(argv[1:])  # every flag is one clusterodm takes
    assert args.data_dir == "/var/lib/clusterodm"
    assert service["WorkingDirectory"] == [args.data_dir]

    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]  # read-only everywhere...
    assert service["ReadWritePaths"] == [args.data_dir]  # ...but the state folder
    assert service["ProtectHome"] == ["yes"] and service["PrivateTmp"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at the clusterodm of this checkout.
    installed = str(VENV_BIN / "clusterodm")
    unit = tmp_path / "clusterodm.service"
    unit.write_text(UNIT.read_text().replace("/opt/clusterodm/.venv/bin/clusterodm", installed))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
