"""Command line, config file precedence and refusal of bad settings."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clusterodm.config import Config, ConfigError, load_config

CLI = [sys.executable, "-m", "clusterodm.main"]


def write_config(tmp_path: Path, data: object) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_defaults_are_clusterodms() -> None:
    c = load_config([])
    assert (c.port, c.admin_cli_port, c.admin_web_port) == (3000, 8080, 10000)
    assert c.cloud_provider == "local" and c.splitmerge is True and c.log_level == "info"
    assert c.data_dir == Path("data") and c.tmp_dir == Path("data/tmp")
    assert c.poll_interval == 60.0 and c.upload_concurrency == 20


def test_command_line_wins_over_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"port": 4000, "admin-cli-port": 0, "token": "from-file", "flood-limit": 3})
    c = load_config(["--config", path, "--port", "5000"])
    assert c.port == 5000  # command line
    assert c.admin_cli_port == 0 and c.token == "from-file" and c.flood_limit == 3  # file
    assert c.admin_web_port == 10000  # default


def test_clusterodm_config_default_json_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The keys of ClusterODM's config-default.json, including the one it never used.
    path = write_config(
        tmp_path,
        {
            "port": 3000,
            "secure-port": 0,
            "admin-cli-port": 8080,
            "admin-web-port": 10000,
            "admin-pass": "",
            "cloud-provider": "local",
            "downloads-from-s3": "",
            "no-splitmerge": True,
            "public-address": "http://cluster:3000",
            "token": "",
            "log-level": "warn",
            "upload-max-speed": 1000,
            "ssl-key": "",
            "ssl-cert": "",
            "asr": "",
            "cluster-address": "",
            "flood-limit": 0,
            "stale-uploads-timeout": 2,
            "debug": "false",
        },
    )
    c = load_config(["--config", path])
    assert c.splitmerge is False and c.public_address == "http://cluster:3000"
    assert c.log_level == "warn" and c.upload_max_speed == 1000 and c.stale_uploads_timeout == 2.0
    assert c.debug is False  # "false" means false here, unlike JS truthiness
    assert "unknown key" not in caplog.text


def test_unknown_config_key_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = load_config(["--config", write_config(tmp_path, {"prot": 1, "port": 3001})])
    assert c.port == 3001
    assert "unknown key 'prot' ignored" in caplog.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"port": 70000}, "port must be between 1 and 65535, got 70000"),
        ({"admin-web-port": -1}, "admin-web-port must be between 0 and 65535, got -1"),
        ({"port": "abc"}, "port must be an integer, got 'abc'"),
        ({"debug": "maybe"}, "debug must be true or false, got 'maybe'"),
        ({"log-level": "loud"}, "log-level must be one of error, warn, info, verbose, debug, silly"),
        ({"log-format": "xml"}, "log-format must be one of text, json, got 'xml'"),
        ({"cloud-provider": "lightning"}, "cloud-provider 'lightning' not available"),
        ({"ssl-key": "k.pem"}, "ssl-key and ssl-cert must be given together"),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_invalid_config_values_are_refused(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(["--config", write_config(tmp_path, data)])


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args, expected in [
        (["--config", str(bad)], f"config file {bad} is not valid JSON"),
        (["--config", str(tmp_path / "missing.json")], "cannot read config file"),
        (["--port", "0"], "port must be between 1 and 65535, got 0"),
    ]:
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("clusterodm: error: ") and expected in lines[0]


def test_help_documents_every_clusterodm_flag() -> None:
    proc = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for flag in [
        "-p PORT, --port PORT",
        "--secure-port",
        "--admin-cli-port",
        "--admin-web-port",
        "--admin-pass",
        "--token",
        "--config",
        "--log-level",
        "--asr",
        "--ssl-key",
        "--ssl-cert",
        "--public-address",
        "--upload-max-speed",
        "--downloads-from-s3",
        "--no-splitmerge",
        "--flood-limit",
        "--stale-uploads-timeout",
        "--debug",
        "-c CLOUD_PROVIDER, --cloud-provider",
        "--data-dir",
        "--admin-bind",
        "--admin-cli-idle-timeout",
        "--http-idle-timeout",
        "--poll-interval",
        "--db URL",
    ]:
        assert flag in proc.stdout, flag


def test_admin_ports_stay_on_loopback_without_password() -> None:
    assert Config().admin_address == "127.0.0.1"
    assert Config(admin_pass="s3cret").admin_address == "0.0.0.0"
    assert Config(admin_bind="0.0.0.0").admin_address == "0.0.0.0"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_admin_bind_to_loopback_needs_no_password(address: str) -> None:
    assert load_config(["--admin-bind", address]).admin_address == address


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "cluster.example.com"])
def test_admin_bind_elsewhere_needs_a_password(address: str) -> None:
    with pytest.raises(ConfigError, match=f"admin-bind {address} is reachable from other hosts"):
        load_config(["--admin-bind", address])
    assert load_config(["--admin-bind", address, "--admin-pass", "s3cret"]).admin_address == address
    # With both admin ports off there is nothing to protect.
    load_config(["--admin-bind", address, "--admin-cli-port", "0", "--admin-web-port", "0"])


def test_admin_bind_without_password_exits_2_saying_what_to_do(tmp_path: Path) -> None:
    args = [*CLI, "--data-dir", str(tmp_path), "--admin-bind", "0.0.0.0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == (
        "clusterodm: error: admin-bind 0.0.0.0 is reachable from other hosts, and without a password "
        "anyone there can add and remove nodes: set --admin-pass too, or bind to 127.0.0.1"
    )


def test_idle_timeouts() -> None:
    defaults = load_config([])
    assert (defaults.admin_cli_idle_timeout, defaults.http_idle_timeout) == (600.0, 30.0)
    assert load_config(["--admin-cli-idle-timeout", "2.5"]).admin_cli_idle_timeout == 2.5
    assert load_config(["--http-idle-timeout", "0.5"]).http_idle_timeout == 0.5
    for flag in ("--admin-cli-idle-timeout", "--http-idle-timeout"):
        with pytest.raises(ConfigError, match=f"{flag[2:]} must be positive"):
            load_config([flag, "0"])


def test_limits_file_feeds_the_local_provider(tmp_path: Path) -> None:
    import asyncio

    from clusterodm.cluster.providers import Limits, make_provider

    path = tmp_path / "limits.json"
    path.write_text(
        json.dumps({"maxImages": 5, "maxConcurrentTasks": 1, "options": {"split": {"remove": True}}})
    )
    provider = make_provider("local", "tok", str(path))
    limits = asyncio.run(provider.validate("tok"))
    assert limits == Limits(5, 1, {"split": {"remove": True}})
    assert asyncio.run(provider.validate("other")) is None
    path.write_text(json.dumps({"maxImages": -1}))
    with pytest.raises(ValueError, match="maxImages must be a non-negative integer, got -1"):
        make_provider("local", "", str(path))
    path.write_text(json.dumps({"maxImage": 3}))
    with pytest.raises(ValueError, match="unknown limits keys: maxImage"):
        make_provider("local", "", str(path))


def test_bad_limits_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text("[1]")
    proc = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "data"), "--limits", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"clusterodm: error: limits file {path}: limits must be a JSON object"
    )


def test_db_url_from_flag_environment_or_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTERODM_DB", raising=False)
    assert load_config([]).db == ""  # SQLite in the data folder
    config = write_config(tmp_path, {"db": "sqlite:///from/file.sqlite3"})
    assert load_config(["--config", config]).db == "sqlite:///from/file.sqlite3"
    monkeypatch.setenv("CLUSTERODM_DB", "postgresql://u@h/env")
    assert load_config(["--config", config]).db == "postgresql://u@h/env"
    assert load_config(["--config", config, "--db", "sqlite:cli.sqlite3"]).db == "sqlite:cli.sqlite3"
    with pytest.raises(ConfigError, match="unknown database URL"):
        load_config(["--db", "sqlite3.db"])


def test_replica_address_from_flag_environment_config_file_or_derived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLUSTERODM_REPLICA_ADDRESS", raising=False)
    config = write_config(tmp_path, {"replica-address": "http://from-file:3000"})
    assert load_config(["--config", config]).replica_url == "http://from-file:3000"
    monkeypatch.setenv("CLUSTERODM_REPLICA_ADDRESS", "http://10.0.0.5:3000/")
    assert load_config(["--config", config]).replica_url == "http://10.0.0.5:3000"
    assert load_config(["--replica-address", "https://r1:443"]).replica_url == "https://r1:443"
    monkeypatch.delenv("CLUSTERODM_REPLICA_ADDRESS")
    # Derived: the API's address when bound to one, else --public-address's host, else the host name.
    assert load_config(["--bind", "10.1.2.3", "--port", "3001"]).replica_url == "http://10.1.2.3:3001"
    public = ["--public-address", "https://odm.example.org/", "--port", "3002"]
    assert load_config(public).replica_url == "http://odm.example.org:3002"
    assert load_config(["--bind", "::1"]).replica_url == "http://[::1]:3000"
    assert load_config([]).replica_url == f"http://{socket.gethostname()}:3000"
    for bad in ("10.0.0.5:3000", "ftp://host", "http://host:99999"):
        with pytest.raises(ConfigError, match="replica-address .* must be a URL like http://"):
            load_config(["--replica-address", bad])


def test_queue_flags_and_keys(tmp_path: Path) -> None:
    c = load_config([])
    assert (c.queue, c.max_queue_hours, c.max_queued_tasks, c.max_queued_tasks_total, c.tmp_quota) == (
        True,
        72.0,
        100,
        1000,
        0,
    )
    flags = ["--no-queue", "--max-queue-hours", "1.5", "--max-queued-tasks", "3"]
    c = load_config([*flags, "--max-queued-tasks-total", "9", "--tmp-quota", "1000000"])
    assert (c.queue, c.max_queue_hours, c.max_queued_tasks, c.max_queued_tasks_total, c.tmp_quota) == (
        False,
        1.5,
        3,
        9,
        1_000_000,
    )
    keys = {"no-queue": True, "max-queue-hours": 2, "max-queued-tasks-total": 0, "tmp-quota": 5}
    c = load_config(["--config", write_config(tmp_path, keys)])
    assert (c.queue, c.max_queue_hours, c.max_queued_tasks_total, c.tmp_quota) == (False, 2.0, 0, 5)
    assert load_config(["--config", write_config(tmp_path, {"queue": False})]).queue is False
    with pytest.raises(ConfigError, match="tmp-quota must not be negative"):
        load_config(["--tmp-quota", "-1"])


def test_unusable_tls_files_exit_2_with_one_line(tmp_path: Path) -> None:
    """A certificate that is not PEM is found at start, not by the HTTPS server after it."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    proc = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "data"), "--ssl-cert", str(garbage), "--ssl-key", str(garbage)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"clusterodm: error: ssl-cert {garbage} with ssl-key {garbage} cannot be used: "
        "both must be PEM files, the key unencrypted and matching the certificate"
    ]


def test_autoscaler_without_the_queue_is_refused_on_a_shared_store(tmp_path: Path) -> None:
    """Replicas forwarding on their own would each create a machine for the same need."""
    asr = tmp_path / "asr.json"
    asr.write_text("{}")
    db = "postgresql://clusterodm@127.0.0.1:1/clusterodm"
    with pytest.raises(ConfigError, match="--asr with --no-queue needs a single process on SQLite"):
        load_config(["--asr", str(asr), "--no-queue", "--db", db])
    assert load_config(["--asr", str(asr), "--db", db]).queue  # the leader creates them
    assert not load_config(["--asr", str(asr), "--no-queue"]).queue  # one process on SQLite
