"""Command line and config file, merged into one typed `Config`.

The flag names, config keys and defaults are ClusterODM's, so an operator can keep their
scripts and `config.json`. Precedence: command line > `--config` file > defaults.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson

from clusterodm import __version__
from clusterodm.cluster.store import StoreError, sqlite_path

LOG_LEVELS = ("error", "warn", "info", "verbose", "debug", "silly")
LOG_FORMATS = ("text", "json")
CLOUD_PROVIDERS = ("local",)

log = logging.getLogger("clusterodm.config")


class ConfigError(Exception):
    """An invalid setting; the message is one line an operator can act on."""


@dataclass(frozen=True, slots=True)
class Config:
    port: int = 3000
    secure_port: int = 0
    bind: str = "0.0.0.0"
    admin_cli_port: int = 8080
    admin_web_port: int = 10000
    admin_pass: str = ""
    admin_bind: str = ""
    admin_cli_idle_timeout: float = 600.0
    http_idle_timeout: float = 30.0
    cloud_provider: str = "local"
    downloads_from_s3: str = ""
    splitmerge: bool = True
    public_address: str = ""
    token: str = ""
    log_level: str = "info"
    log_format: str = "text"
    upload_max_speed: int = 0
    upload_concurrency: int = 20
    flood_limit: int = 0
    stale_uploads_timeout: float = 0.0
    queue: bool = True
    """Committed tasks with no free node (or over their token's maxConcurrentTasks) wait at the
    proxy; `--no-queue`: ClusterODM's behaviour (refuse, or push into a node's own queue)."""
    max_queue_hours: float = 72.0
    max_queued_tasks: int = 100
    max_queued_tasks_total: int = 1000
    tmp_quota: int = 0
    ssl_key: str = ""
    ssl_cert: str = ""
    asr: str = ""
    limits: str = ""
    debug: bool = False
    data_dir: Path = Path("data")
    db: str = ""
    """`--db` URL of the state store; empty: SQLite in `<data_dir>/clusterodm.sqlite3`."""
    replica_address: str = ""
    """`--replica-address` URL other replicas reach this one at; empty: see `replica_url`."""
    poll_interval: float = 60.0
    metrics: bool = True
    metrics_public: bool = False
    config: str = ""

    @property
    def tmp_dir(self) -> Path:
        """Where client uploads wait until they are forwarded to a node."""
        return self.data_dir / "tmp"

    @property
    def replica_url(self) -> str:
        """How other replicas reach this one: `--replica-address`, else the API's scheme and port
        on the bind address, or (bound to every interface) on `--public-address`'s host or this
        machine's host name."""
        if self.replica_address:
            return self.replica_address.rstrip("/")
        scheme = "https" if self.ssl and not self.secure_port else "http"
        host = self.bind
        if host in ("", "0.0.0.0", "::"):
            host = urlsplit(self.public_address).hostname or socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def ssl(self) -> bool:
        return bool(self.ssl_key and self.ssl_cert)

    @property
    def admin_address(self) -> str:
        """Admin ports stay on loopback unless a password protects them (or the operator insists)."""
        if self.admin_bind:
            return self.admin_bind
        return "0.0.0.0" if self.admin_pass else "127.0.0.1"


# Config-file key -> Config field. Keys are ClusterODM's (hyphenated), plus our own additions.
_KEYS: dict[str, str] = {
    "port": "port",
    "secure-port": "secure_port",
    "bind": "bind",
    "admin-cli-port": "admin_cli_port",
    "admin-web-port": "admin_web_port",
    "admin-pass": "admin_pass",
    "admin-bind": "admin_bind",
    "admin-cli-idle-timeout": "admin_cli_idle_timeout",
    "http-idle-timeout": "http_idle_timeout",
    "cloud-provider": "cloud_provider",
    "downloads-from-s3": "downloads_from_s3",
    "splitmerge": "splitmerge",
    "public-address": "public_address",
    "token": "token",
    "log-level": "log_level",
    "log-format": "log_format",
    "upload-max-speed": "upload_max_speed",
    "upload-concurrency": "upload_concurrency",
    "flood-limit": "flood_limit",
    "stale-uploads-timeout": "stale_uploads_timeout",
    "queue": "queue",
    "max-queue-hours": "max_queue_hours",
    "max-queued-tasks": "max_queued_tasks",
    "max-queued-tasks-total": "max_queued_tasks_total",
    "tmp-quota": "tmp_quota",
    "ssl-key": "ssl_key",
    "ssl-cert": "ssl_cert",
    "asr": "asr",
    "limits": "limits",
    "debug": "debug",
    "data-dir": "data_dir",
    "db": "db",
    "replica-address": "replica_address",
    "poll-interval": "poll_interval",
    "metrics": "metrics",
    "metrics-public": "metrics_public",
}
# Keys ClusterODM's config-default.json carries that mean nothing to us (or are spelled otherwise).
_IGNORED_KEYS = {"cluster-address"}

_PORT_FIELDS = ("port", "secure_port", "admin_cli_port", "admin_web_port")


DESCRIPTION = (
    "Reverse proxy, load balancer and task tracker for NodeODM nodes (drop-in replacement for "
    "ClusterODM). `clusterodm demo [flags]` starts three simulated nodes behind it to try it out."
)


def build_parser(prog: str = "clusterodm", description: str = DESCRIPTION) -> argparse.ArgumentParser:
    """All flags default to None so that we can tell which ones were given on the command line."""
    p = argparse.ArgumentParser(prog=prog, description=description, argument_default=None)
    add = p.add_argument
    add("-p", "--port", type=int, help="port the NodeODM-compatible API listens on (default: 3000)")
    add(
        "--secure-port",
        type=int,
        help="with --ssl-key/--ssl-cert: also serve HTTPS on this port while "
        "HTTP stays on --port; 0 means HTTPS replaces HTTP on --port (default: 0)",
    )
    add("--bind", help="address the API listens on (default: 0.0.0.0)")
    add("--admin-cli-port", type=int, help="port of the telnet admin CLI, 0 disables it (default: 8080)")
    add("--admin-web-port", type=int, help="port of the admin web page, 0 disables it (default: 10000)")
    add(
        "--admin-pass",
        help="password for the admin CLI (LOGIN) and admin web (user admin); without "
        "it both admin ports listen on 127.0.0.1 only (default: none)",
    )
    add(
        "--admin-bind",
        help="address the admin ports listen on (default: 0.0.0.0 with --admin-pass, 127.0.0.1 "
        "without); an address other than loopback needs --admin-pass",
    )
    add(
        "--admin-cli-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close admin CLI sessions that send nothing for this long (default: 600)",
    )
    add(
        "--http-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close HTTP connections (API and admin web) that send no complete request head for "
        "this long: new connections that stay silent and idle keep-alive ones (default: 30)",
    )
    add("-c", "--cloud-provider", help="user/limits provider: local (default: local)")
    add("--downloads-from-s3", metavar="URL", help="redirect task downloads to this S3 base URL")
    add(
        "--no-splitmerge",
        dest="splitmerge",
        action="store_const",
        const=False,
        help="do not inject sm-cluster for split-merge tasks and refuse seed.zip uploads",
    )
    add(
        "--public-address",
        metavar="URL",
        help="address nodes use to reach this cluster (sm-cluster, "
        "webhooks); required with --asr (default: the request's Host header for sm-cluster)",
    )
    add("--token", help="token clients must send (?token=...) on every non-public route (default: none)")
    add("--log-level", help=f"one of {', '.join(LOG_LEVELS)} (default: info)")
    add(
        "--log-format",
        help="text, or json for one JSON object a line with the text log's fields "
        "(time, level, logger, message, exception) for log collectors (default: text)",
    )
    add(
        "--upload-max-speed",
        type=int,
        metavar="BYTES_PER_S",
        help="cap on the total rate of uploads forwarded to nodes, 0 = no cap (default: 0)",
    )
    add(
        "--upload-concurrency",
        type=int,
        metavar="N",
        help="concurrent upload requests per task forward (default: 20)",
    )
    add(
        "--flood-limit",
        type=int,
        metavar="N",
        help="refuse new tasks from a token with more than N uncommitted inits, 0 = off (default: 0)",
    )
    add(
        "--stale-uploads-timeout",
        type=float,
        metavar="HOURS",
        help="remove uncommitted uploads idle for this many hours, 0 = only the 48 h cap (default: 0)",
    )
    add(
        "--no-queue",
        dest="queue",
        action="store_const",
        const=False,
        help="no task queue at the proxy: like ClusterODM, refuse a task over its token's "
        "maxConcurrentTasks and send a task to the best node even when it has no free slot",
    )
    add(
        "--max-queue-hours",
        type=float,
        metavar="HOURS",
        help="fail a task that waited this long in the proxy's queue, 0 = never (default: 72)",
    )
    add(
        "--max-queued-tasks",
        type=int,
        metavar="N",
        help="refuse new tasks (at init) of a token with N tasks in the queue, 0 = no limit (default: 100)",
    )
    add(
        "--max-queued-tasks-total",
        type=int,
        metavar="N",
        help="refuse new tasks (at init) while N tasks are in the queue, 0 = no limit (default: 1000)",
    )
    add(
        "--tmp-quota",
        type=int,
        metavar="BYTES",
        help="disk space uploads and queued tasks may use in DATA-DIR/tmp; new tasks and uploads "
        "that would pass it are refused, 0 = no quota (default: 0)",
    )
    add("--ssl-key", metavar="FILE", help="PEM private key; with --ssl-cert enables HTTPS")
    add("--ssl-cert", metavar="FILE", help="PEM certificate chain; with --ssl-key enables HTTPS")
    add("--asr", metavar="FILE", help="autoscaler configuration (JSON) enabling machine autoscaling")
    add(
        "--limits",
        metavar="FILE",
        help="JSON limits the local provider applies to every token: "
        '{"maxImages": N, "maxConcurrentTasks": N, "options": {...}} as in ClusterODM\'s providers',
    )
    add("--debug", action="store_const", const=True, help="disable caches, log handler exceptions in full")
    add(
        "--data-dir",
        metavar="DIR",
        help="where state (nodes.json, SQLite store, uploads) lives (default: ./data)",
    )
    add(
        "--db",
        metavar="URL",
        help="state store: sqlite:///path/file.sqlite3 (one process) or "
        "postgresql://user:password@host:port/dbname (replicas); env CLUSTERODM_DB "
        "(default: SQLite in DATA-DIR/clusterodm.sqlite3)",
    )
    add(
        "--replica-address",
        metavar="URL",
        help="how the other replicas sharing the --db reach this one, e.g. http://10.0.0.5:3000; "
        "env CLUSTERODM_REPLICA_ADDRESS (default: the API's scheme and port on --bind, or on "
        "--public-address's host or this machine's host name when bound to all interfaces)",
    )
    add(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="how often every node's /info is polled (default: 60)",
    )
    add(
        "--metrics-public",
        action="store_const",
        const=True,
        help="also serve GET /metrics (Prometheus) on the API port, without token; it is always "
        "served on the admin web port, behind --admin-pass (default: off)",
    )
    add(
        "--no-metrics",
        dest="metrics",
        action="store_const",
        const=False,
        help="collect no Prometheus metrics and serve no /metrics",
    )
    add(
        "--config",
        metavar="FILE",
        help="JSON file with the same hyphenated keys as ClusterODM's "
        "config-default.json; command line flags win over it",
    )
    add("--version", action="version", version=f"clusterodm {__version__}")
    return p


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Turn a JSON config value into the field's type, refusing what would be a surprise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a path, got {value!r}")
        return Path(value)
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return str(value)


_FIELD_TYPES: dict[str, Any] = {
    f.name: {"int": int, "float": float, "bool": bool, "str": str, "Path": Path}[str(f.type)]
    for f in fields(Config)
}


def read_config_file(path: str) -> dict[str, Any]:
    """Read a ClusterODM-style JSON config; unknown keys warn, they do not stop the start."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "no-splitmerge":
            values["splitmerge"] = not _coerce(key, value, bool)
        elif key == "no-queue":
            values["queue"] = not _coerce(key, value, bool)
        elif key in _KEYS:
            field = _KEYS[key]
            values[field] = _coerce(key, value, _FIELD_TYPES[field])
        elif key not in _IGNORED_KEYS:
            log.warning("config file %s: unknown key %r ignored", path, key)
    return values


def validate(config: Config) -> Config:
    """Check values that argparse cannot: ranges, pairs, files that must exist."""
    for name in _PORT_FIELDS:
        value = getattr(config, name)
        low = 1 if name == "port" else 0
        if not low <= value <= 65535:
            raise ConfigError(f"{name.replace('_', '-')} must be between {low} and 65535, got {value}")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"log-level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"log-format must be one of {', '.join(LOG_FORMATS)}, got {config.log_format!r}")
    if config.cloud_provider not in CLOUD_PROVIDERS:
        available = ", ".join(CLOUD_PROVIDERS)
        raise ConfigError(f"cloud-provider {config.cloud_provider!r} not available, use one of {available}")
    if bool(config.ssl_key) != bool(config.ssl_cert):
        raise ConfigError("ssl-key and ssl-cert must be given together")
    for name in ("ssl_key", "ssl_cert", "asr", "limits"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name.replace('_', '-')} file {path} does not exist")
    if config.ssl:
        check_tls_pair(config.ssl_cert, config.ssl_key)
    if config.secure_port and not config.ssl:
        raise ConfigError("secure-port needs ssl-key and ssl-cert")
    for name in (
        "upload_max_speed",
        "flood_limit",
        "stale_uploads_timeout",
        "max_queue_hours",
        "max_queued_tasks",
        "max_queued_tasks_total",
        "tmp_quota",
    ):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name.replace('_', '-')} must not be negative")
    if config.upload_concurrency < 1:
        raise ConfigError("upload-concurrency must be at least 1")
    if config.poll_interval <= 0:
        raise ConfigError("poll-interval must be positive")
    if config.replica_address:
        _check_replica_address(config.replica_address)
    try:
        shared_store = sqlite_path(config.db, config.data_dir) is None
    except StoreError as e:
        raise ConfigError(str(e)) from None
    if shared_store and config.asr and not config.queue:
        # Each replica's forwarder would create machines on its own count: two for one need.
        raise ConfigError(
            "--asr with --no-queue needs a single process on SQLite: on PostgreSQL the leader "
            "creates the machines, for tasks waiting in the proxy's queue; drop --no-queue"
        )
    for name in ("admin_cli_idle_timeout", "http_idle_timeout"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')} must be positive")
    if (
        config.admin_bind
        and not config.admin_pass
        and (config.admin_cli_port or config.admin_web_port)
        and not _is_loopback(config.admin_bind)
    ):
        raise ConfigError(
            f"admin-bind {config.admin_bind} is reachable from other hosts, and without a password "
            "anyone there can add and remove nodes: set --admin-pass too, or bind to 127.0.0.1"
        )
    return config


def _check_replica_address(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"replica-address {url!r} must be a URL like http://10.0.0.5:3000 (how the other replicas "
            "reach this one's API)"
        )


def _is_loopback(address: str) -> bool:
    """Whether `address` (an IP or `localhost`) only accepts connections from this machine."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def load_config(
    argv: list[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> Config:
    """Parse argv and the optional config file; raise ConfigError on any invalid value.

    `defaults` (Config field names) replace the built-in defaults, below the file and the flags:
    `clusterodm demo` keeps its state in a temporary folder unless told otherwise."""
    args = (parser or build_parser()).parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    values: dict[str, Any] = dict(defaults or {})
    if "config" in given:
        values.update(read_config_file(given["config"]))
    if os.environ.get("CLUSTERODM_DB"):
        values["db"] = os.environ["CLUSTERODM_DB"]  # the environment wins over the config file
    if os.environ.get("CLUSTERODM_REPLICA_ADDRESS"):
        values["replica_address"] = os.environ["CLUSTERODM_REPLICA_ADDRESS"]
    values.update(given)
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    return validate(Config(**values))


def config_or_exit(
    argv: list[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> Config:
    try:
        return load_config(argv, defaults, parser)
    except ConfigError as e:
        fail(str(e))


def env_number(environ: Mapping[str, str], name: str, fallback: float) -> float:
    """A positive number from an environment variable (a tuning knob), else `fallback`.

    Invalid values are logged and ignored: the knobs are for tests and operators in a pinch."""
    raw = environ.get(name)
    if not raw:
        return fallback
    try:
        value = float(raw)
    except ValueError:
        log.warning("Ignoring %s=%r: not a number", name, raw)
        return fallback
    if not value > 0:
        log.warning("Ignoring %s=%r: must be positive", name, raw)
        return fallback
    return value


def check_tls_pair(cert: str, key: str) -> None:
    """Load the pair as the HTTPS server will, so that a bad file stops the start with one line
    rather than a traceback from inside the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except OSError as e:  # ssl.SSLError included
        detail = e.reason if isinstance(e, ssl.SSLError) else e.strerror
        raise ConfigError(
            f"ssl-cert {cert} with ssl-key {key} cannot be used{f' ({detail})' if detail else ''}: "
            "both must be PEM files, the key unencrypted and matching the certificate"
        ) from None


def fail(message: str) -> NoReturn:
    """Stop the start with exit code 2 and one line per problem saying what to fix."""
    for line in message.splitlines() or [message]:
        print(f"clusterodm: error: {line}", file=sys.stderr)
    raise SystemExit(2)
