"""The ASR file: provider defaults merged, CHANGEME!/missing keys refused one line per key, start refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscale.asrkit import FakeMachines, asr_config, run_clusterodm_check, write_asr
from clusterodm.autoscale import AsrConfigError
from clusterodm.autoscale.config import load_settings, parse_settings


def test_defaults_are_merged_with_the_file() -> None:
    settings = parse_settings(asr_config("hetzner", s3={"bucket": "mine"}, machinesLimit=3))
    assert settings.get("location") == "fsn1" and settings.get("image") == "ubuntu-18.04"
    assert settings.get("s3.bucket") == "mine" and settings.get("s3.accessKey") == "testing"
    assert settings.get("s3.ignoreSSL") is False and settings.get("dockerImage") == "opendronemap/nodeodm"
    assert settings.machines_limit == 3 and settings.max_runtime_s == -1 and settings.create_retries == 1


def test_changeme_and_missing_keys_are_listed_one_per_line(tmp_path: Path) -> None:
    path = write_asr(tmp_path / "asr.json", {"provider": "digitalocean", "s3": {"bucket": "b"}})
    with pytest.raises(AsrConfigError) as err:
        load_settings(path)
    assert err.value.problems == [
        f"ASR config {path}: required key {key} is still CHANGEME!, set it"
        for key in ("accessToken", "s3.accessKey", "s3.secretKey", "s3.endpoint")
    ]
    aws = asr_config("aws", s3={"acl": None}, securityGroup="CHANGEME!")
    del aws["accessKey"]
    with pytest.raises(AsrConfigError) as err:
        parse_settings(aws)
    assert err.value.problems == [
        "ASR config: required key accessKey is still CHANGEME!, set it",
        "ASR config: required key s3.acl is missing",
        "ASR config: required key securityGroup is still CHANGEME!, set it",
    ]


def test_other_mistakes_are_reported() -> None:
    with pytest.raises(AsrConfigError, match="provider must be one of aws, digitalocean, hetzner, scaleway"):
        parse_settings({"provider": "ovh"})
    config = asr_config(
        sshKey={"path": "/nonexistent/key"}, imageSizeMapping=[{"slug": "x"}], maxRuntime="1h"
    )
    with pytest.raises(AsrConfigError) as err:
        parse_settings(config)
    assert len(err.value.problems) == 3
    assert "sshKey.path /nonexistent/key does not exist" in err.value.problems[0]


def test_clusterodm_refuses_to_start(tmp_path: Path, fake_dm: FakeMachines) -> None:
    """Exit code 2 and one line per problem: CHANGEME keys, no --public-address, no docker-machine."""
    asr = write_asr(tmp_path / "asr.json", {"provider": "scaleway", "organization": "o"})
    args = ["--asr", str(asr), "--data-dir", str(tmp_path / "data"), "--admin-cli-port", "0"]
    args += ["--admin-web-port", "0", "--port", "1"]
    done = run_clusterodm_check(args, {"PATH": str(Path(fake_dm.executable).parent.parent)}, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("clusterodm: error: "))
    errors = [line.removeprefix("clusterodm: error: ") for line in lines[first:]]
    assert errors == [
        f"ASR config {asr}: required key secretToken is still CHANGEME!, set it",
        f"ASR config {asr}: required key s3.accessKey is still CHANGEME!, set it",
        f"ASR config {asr}: required key s3.secretKey is still CHANGEME!, set it",
        f"ASR config {asr}: required key s3.endpoint is still CHANGEME!, set it",
        f"ASR config {asr}: required key s3.bucket is still CHANGEME!, set it",
        "--asr needs --public-address: the URL machines use to report finished tasks",
        "docker-machine was not found on PATH; install it (autoscaling creates machines with it)",
    ]
