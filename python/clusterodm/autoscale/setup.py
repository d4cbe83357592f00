"""The commands that turn a fresh machine into a NodeODM node, as argument lists.

They run through `DockerMachine.ssh`, which quotes every argument for the remote shell; the
webhook URL, tokens and keys therefore reach `docker run` verbatim, whatever they contain.
"""

from __future__ import annotations

from urllib.parse import urlencode

from clusterodm.autoscale.config import AsrSettings

NODE_PORT = 3000
SWAPFILE = "/swapfile"


def webhook_url(public_address: str, secret: str) -> str:
    """Where the node reports finished tasks: our `/commit`, with the machine's secret."""
    return f"{public_address.rstrip('/')}/commit?{urlencode({'secret': secret})}"


def mem_total_kb(meminfo: str) -> int | None:
    """MemTotal from /proc/meminfo, in kB."""
    for line in meminfo.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "MemTotal:" and parts[1].isdigit():
            return int(parts[1])
    return None


def swap_commands(mem_kb: int, factor: float, sudo: bool) -> list[list[str]]:
    """Create and enable a swapfile of RAM x factor (none when factor <= 0)."""
    size_kb = int(mem_kb * factor)
    if size_kb <= 0:
        return []
    prefix = ["sudo"] if sudo else []
    return [
        [*prefix, "fallocate", "-l", f"{size_kb}K", SWAPFILE],
        [*prefix, "chmod", "600", SWAPFILE],
        [*prefix, "mkswap", SWAPFILE],
        [*prefix, "swapon", SWAPFILE],
    ]


def login_command(settings: AsrSettings) -> tuple[list[str], bytes] | None:
    """`docker login` for a private registry; the password goes through stdin, not the command line."""
    url = settings.get("dockerRegistry.url")
    if not isinstance(url, str) or not url:
        return None
    user = str(settings.get("dockerRegistry.username", ""))
    password = str(settings.get("dockerRegistry.password", ""))
    return ["docker", "login", "--username", user, "--password-stdin", url], password.encode()


def setup_command(settings: AsrSettings) -> list[str] | None:
    """AWS `nodeSetupCmd`: the operator's own shell command, run as written."""
    cmd = settings.get("nodeSetupCmd") if settings.provider.name == "aws" else None
    return ["sh", "-c", cmd] if isinstance(cmd, str) and cmd else None


def docker_run_command(settings: AsrSettings, node_token: str, webhook: str) -> list[str]:
    """`docker run` of the NodeODM image with one slot, S3 results, our webhook and the node token."""
    argv = ["docker", "run", "-d", "-p", f"{NODE_PORT}:{NODE_PORT}"]
    if settings.get("dockerGpu") is True:
        argv += ["--gpus", "all"]
    if settings.provider.name == "aws":
        # ClusterODM documents dockerDataDirMountPath but read dataDirMountPath (spec 8.15): accept both.
        mount = settings.get("dockerDataDirMountPath") or settings.get("dataDirMountPath")
        if isinstance(mount, str) and mount:
            argv += ["--mount", f"type=bind,source={mount},target=/var/www/data"]
    argv += [str(settings.get("dockerImage")), "-q", "1", *settings.provider.s3_flags(settings)]
    argv += ["--webhook", webhook, "--token", node_token]
    return argv
