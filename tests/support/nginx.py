"""nginx (Debian `nginx-light`) as the load balancer in front of clusterodm replicas, for tests.

with Nginx(tmp_path, [a, b, c]) as lb:
    Node(lb.host, lb.port).info()

A real nginx process on a free loopback port, with a generated configuration and its own prefix
folder (temp files, pid, logs), stopped at the end. Requests go round-robin to the replicas,
without stickiness. `hash_uploads=True` adds the optional hash on the task uuid for the upload
steps (`init` by its `set-uuid` header, `upload/<uuid>` and `commit/<uuid>` by their path), so one
client's upload session stays on one replica. The access log records which replica answered each
request (`upstreams()`). Idle connections to the replicas are kept (128 per worker), so many
clients do not make nginx open a connection per request. Run as root, the workers run as root
too (`user root;`), since the prefix folder is private.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from support.procs import ServerProcess, free_port, start_process, wait_http

NGINX = "/usr/sbin/nginx"


class HasAddress(Protocol):
    host: str
    port: int


def nginx_binary() -> str:
    """The nginx program, or a clear error saying which package provides it."""
    found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
    if found is None:
        raise RuntimeError(
            "nginx is not installed: run `scripts/setup.sh --test` (Debian package `nginx-light`)"
        )
    return found


CONF = """\
{user}worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format replicas '$request_method $uri $status $upstream_addr';
    access_log {dir}/access.log replicas;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 0;

    # The task uuid of an upload step: `set-uuid` of an init, the path's uuid of upload/commit.
    map $uri $upload_uuid {{
        ~^/task/new/(upload|commit)/(?<id>[^/]+) $id;
        default "";
    }}
    keepalive_requests 100000;
    upstream replicas {{
{servers}
        keepalive 128;
        keepalive_requests 100000;
    }}
    upstream replicas_by_uuid {{
        hash $upload_uuid$http_set_uuid consistent;
{servers}
        keepalive 128;
        keepalive_requests 100000;
    }}
    server {{
        listen {host}:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 300s;
        location / {{
            proxy_pass http://replicas;
        }}
{upload_locations}
    }}
}}
"""
UPLOAD_LOCATIONS = """\
        location = /task/new/init {
            proxy_pass http://replicas_by_uuid;
        }
        location ^~ /task/new/upload/ {
            proxy_pass http://replicas_by_uuid;
        }
        location ^~ /task/new/commit/ {
            proxy_pass http://replicas_by_uuid;
        }
"""


class Nginx(ServerProcess):
    """A running nginx balancing over `replicas`; `url`/`host`/`port` address it."""

    def __init__(
        self,
        workdir: Path,
        replicas: Sequence[HasAddress],
        *,
        hash_uploads: bool = False,
        name: str = "nginx",
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        self.prefix = workdir / f"{name}-{self.port}"
        self.log_path = self.prefix / "nginx.log"
        self.conf_path = self.prefix / "nginx.conf"
        self.replicas = list(replicas)
        self.hash_uploads = hash_uploads
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        servers = "\n".join(f"        server {r.host}:{r.port};" for r in self.replicas)
        return CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            dir=self.prefix,
            host=self.host,
            port=self.port,
            servers=servers,
            upload_locations=UPLOAD_LOCATIONS if self.hash_uploads else "",
        )

    def start(self, timeout: float = 15.0) -> Nginx:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config())
        args = [nginx_binary(), "-p", str(self.prefix), "-e", "stderr", "-c", str(self.conf_path)]
        args += ["-g", "daemon off;"]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=10)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration:\n{check.stderr}\n{self.config()}")
        self.proc = start_process(args, self.log_path)
        try:
            wait_http(f"{self.url}/auth/info", timeout=timeout, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def upstreams(self) -> list[tuple[str, str, str, str]]:
        """(method, path, status, replica `host:port`) of every request so far, from the access log.

        A request nginx retried on another replica lists every address it tried (`a, b`)."""
        path = self.prefix / "access.log"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text().splitlines():
            method, uri, status, upstream = line.split(" ", 3)
            entries.append((method, uri, status, upstream))
        return entries

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""
