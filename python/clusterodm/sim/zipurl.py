"""A task's ``zipurl``: download the archive and unzip it into the images folder, as NodeODM does.

NodeODM fetches the URL with the ``request`` library (a HEAD, then the GET piped to
``zipurl.zip``) during the task's initialisation, after it has answered the client. Connection
problems therefore fail the task (status 30) with Node's socket error text as ``errorMessage``
(``connect ECONNREFUSED 127.0.0.1:9``, ``getaddrinfo ENOTFOUND host``), within a fraction of a
second for a refused connection. Archives are unzipped without their folder structure.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ARCHIVE_NAME = "zipurl.zip"
CONNECT_TIMEOUT_S = 30.0


class ZipUrlError(Exception):
    """The download or the archive failed; the message is the task's ``errorMessage``."""


async def _connect_check(url: str) -> None:
    """Open (and close) a TCP connection to the URL's host, failing with Node's error wording."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ZipUrlError(f'Invalid URI "{url}"')
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ZipUrlError(f'Invalid URI "{url}"') from None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        code = "EAI_AGAIN" if exc.errno == socket.EAI_AGAIN else "ENOTFOUND"  # Node's names
        raise ZipUrlError(f"getaddrinfo {code} {parts.hostname}") from None
    address = str(infos[0][4][0])
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise ZipUrlError(f"connect ETIMEDOUT {address}:{port}") from None
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        raise ZipUrlError(f"connect {code} {address}:{port}") from None
    writer.close()


async def download(url: str, destination: Path) -> None:
    """Fetch ``url`` into ``destination``. Like ``request``, any HTTP status is saved as is (an error
    page then fails as a bad archive when unzipped)."""
    await _connect_check(url)
    try:
        async with (
            httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            with destination.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise ZipUrlError(str(exc) or type(exc).__name__) from None


def extract_all(directory: Path) -> None:
    """Unzip every ``*.zip`` (but ``seed.zip``) of ``directory`` into it, flat, then delete the archives."""
    for archive in sorted(directory.iterdir()):
        if not archive.name.lower().endswith(".zip") or archive.name.lower() == "seed.zip":
            continue
        try:
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.infolist():
                    name = Path(member.filename.replace("\\", "/")).name
                    if member.is_dir() or not name:
                        continue
                    with bundle.open(member) as source, (directory / name).open("wb") as target:
                        while block := source.read(1 << 20):
                            target.write(block)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ZipUrlError(f"Cannot unzip {archive.name}: {exc}") from None
        archive.unlink()
