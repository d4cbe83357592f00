"""Large downloads stream with bounded memory, a client hang-up frees the node connection, TLS."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import sys
import time
import uuid as uuid_lib
from pathlib import Path
from types import SimpleNamespace

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.clusterodm import ClusterODM
from support.procs import free_port, start_process, stop_process, wait_http
from support.simnode import SimNode

from .conftest import create_task, insert_routes

ASSET = 200_000_000


def vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def test_big_download_streams_with_bounded_rss(tmp_path: Path, module_images: list[str]) -> None:
    with SimNode(tmp_path, "--processing-seconds", "0.2", "--asset-size", str(ASSET)) as node:
        uuid = create_task(node, module_images)
        cluster = ClusterODM(tmp_path, nodes=[node])
        insert_routes(cluster.data_dir, node, [uuid])
        with cluster.start(wait_nodes=1):
            assert cluster.proc is not None
            pid = cluster.proc.pid
            url = f"{cluster.url}/task/{uuid}/download/all.zip"
            before = vm_kb(pid, "VmHWM")
            received = 0
            with httpx.stream("GET", url, timeout=30) as reply:
                assert reply.headers["content-length"] == str(ASSET)
                for chunk in reply.iter_raw(1 << 20):
                    received += len(chunk)
            assert received == ASSET
            assert vm_kb(pid, "VmHWM") - before < 60_000, "the download was buffered in memory"
            assert httpx.get(f"{cluster.url}/task/{uuid}/info").json()["uuid"] == uuid


def test_client_hangup_frees_the_node_connection_at_once(tmp_path: Path) -> None:
    """Judged from the node's side: its endless download ends when the client goes away."""
    port = free_port()
    log = tmp_path / "endless.log"
    proc = start_process([sys.executable, str(Path(__file__).with_name("endlessnode.py")), str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/info", proc=proc, log_path=log)
        node = SimpleNamespace(host="127.0.0.1", port=port)
        uuid = str(uuid_lib.uuid4())
        cluster = ClusterODM(tmp_path, nodes=[node])
        insert_routes(cluster.data_dir, node, [uuid])  # type: ignore[arg-type]
        stats = f"http://127.0.0.1:{port}/stats"
        with cluster.start(wait_nodes=1):
            for _ in range(3):
                with httpx.stream("GET", f"{cluster.url}/task/{uuid}/download/all.zip", timeout=10) as reply:
                    assert reply.headers["content-length"] == "10000000000"
                    chunks = reply.iter_raw(1 << 16)  # keep it: a dropped iterator closes the stream
                    next(chunks)
                    assert httpx.get(stats).json()["sending"] == 1
                hung_up = time.monotonic()
                while httpx.get(stats).json()["sending"]:
                    assert time.monotonic() - hung_up < 2, "the node kept sending to a departed client"
                    time.sleep(0.02)
            assert httpx.get(stats).json() == {"sending": 0, "closed_by_peer": 3}
    finally:
        stop_process(proc)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_tls_on_secure_port(tmp_path: Path, sim: SimNode, module_images: list[str]) -> None:
    uuid = create_task(sim, module_images)
    key, cert = _self_signed(tmp_path)
    secure = free_port()
    flags = ("--ssl-key", str(key), "--ssl-cert", str(cert), "--secure-port", str(secure))
    cluster = ClusterODM(tmp_path, *flags, nodes=[sim])
    insert_routes(cluster.data_dir, sim, [uuid])
    with cluster.start(wait_nodes=1):
        base = f"https://127.0.0.1:{secure}"
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            assert client.get(f"{base}/info").json()["version"] == "1.5.3"
            assert client.get(f"{base}/task/{uuid}/info").json()["uuid"] == uuid
        assert httpx.get(f"{cluster.url}/info").json()["version"] == "1.5.3"
