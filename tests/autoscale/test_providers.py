"""Each provider's docker-machine create arguments for a given config and image count (spec 6)."""

from __future__ import annotations

from typing import Any

import pytest

from autoscale.asrkit import asr_config
from clusterodm.autoscale.config import parse_settings
from clusterodm.autoscale.setup import docker_run_command, swap_commands, webhook_url

CASES: list[tuple[str, dict[str, Any], int, list[str]]] = [
    (
        "digitalocean",
        {"sshKey": {"fingerprint": "aa:bb", "path": ""}, "engineInstallUrl": "https://get.example/x.sh"},
        30,
        ["--driver", "digitalocean", "--digitalocean-access-token", "do-secret-token"]
        + ["--digitalocean-region", "nyc3", "--digitalocean-image", "ubuntu-16-04-x64"]
        + ["--digitalocean-size", "small", "--digitalocean-monitoring=true"]
        + ["--digitalocean-tags", "clusterodm", "--digitalocean-ssh-key-fingerprint", "aa:bb"]
        + ["--engine-install-url", "https://get.example/x.sh"],
    ),
    (
        "hetzner",
        {"location": ["nbg1", "hel1"]},
        120,
        ["--driver", "hetzner", "--hetzner-api-token", "hz-secret-token"]
        + ["--hetzner-server-location", "nbg1", "--hetzner-server-type", "big"]
        + ["--hetzner-image", "ubuntu-18.04"],
    ),
    (
        "hetzner",
        {"snapshot": True, "imageId": "4711", "sshKey": {"id": 12, "path": __file__}},
        5,
        ["--driver", "hetzner", "--hetzner-api-token", "hz-secret-token"]
        + ["--hetzner-server-location", "fsn1", "--hetzner-server-type", "small"]
        + ["--hetzner-image-id", "4711", "--hetzner-existing-key-id", "12"]
        + ["--hetzner-existing-key-path", __file__],
    ),
    (
        "scaleway",
        {},
        50,
        ["--driver", "scaleway", "--scaleway-organization", "org-1", "--scaleway-token", "scw-secret-token"]
        + ["--scaleway-region", "par1", "--scaleway-image", "ubuntu-xenial"]
        + ["--scaleway-commercial-type", "small"],
    ),
    (
        "aws",
        {
            "imageSizeMapping": [{"maxImages": 100, "slug": "t3.large", "storage": 80, "spotPrice": 0.1}],
            "ami": "ami-123",
            "spot": True,
            "monitoring": True,
            "tags": ["Name", "odm"],
            "zone": "b",
            "vpc": "vpc-1",
            "subnet": "subnet-2",
            "iamrole": "odm-role",
            "usePrivateAddress": True,
        },
        100,
        ["--driver", "amazonec2", "--amazonec2-access-key", "AKIAFAKE"]
        + ["--amazonec2-secret-key", "aws-secret-key", "--amazonec2-region", "us-west-2"]
        + ["--amazonec2-ami", "ami-123", "--amazonec2-instance-type", "t3.large"]
        + ["--amazonec2-root-size", "80", "--amazonec2-security-group", "odm", "--amazonec2-monitoring"]
        + ["--amazonec2-request-spot-instance", "--amazonec2-spot-price", "0.1"]
        + ["--amazonec2-tags", "Name,odm", "--amazonec2-use-private-address"]
        + ["--amazonec2-zone", "b", "--amazonec2-vpc-id", "vpc-1", "--amazonec2-subnet-id", "subnet-2"]
        + ["--amazonec2-iam-instance-profile", "odm-role"],
    ),
]


@pytest.mark.parametrize(("provider", "overrides", "images", "expected"), CASES)
def test_create_arguments(provider: str, overrides: dict[str, Any], images: int, expected: list[str]) -> None:
    settings = parse_settings(asr_config(provider, **overrides))
    size = settings.size_for(images)
    assert size is not None
    assert settings.provider.create_args(settings, size, 1) == expected


def test_region_rotates_with_the_attempt() -> None:
    settings = parse_settings(asr_config("digitalocean", region=["ams3", "fra1", "lon1"]))
    size = settings.size_for(1)
    assert size is not None
    regions = []
    for attempt in range(1, 6):
        args = settings.provider.create_args(settings, size, attempt)
        regions.append(args[args.index("--digitalocean-region") + 1])
    assert regions == ["ams3", "fra1", "lon1", "ams3", "fra1"]


def test_size_mapping_is_sorted_and_bounded() -> None:
    mapping = [{"maxImages": 500, "slug": "big"}, {"maxImages": 10, "slug": "tiny"}]
    settings = parse_settings(asr_config("scaleway", imageSizeMapping=mapping))
    assert [settings.size_for(n)["slug"] for n in (1, 10, 11, 500)] == ["tiny", "tiny", "big", "big"]  # type: ignore[index]
    assert settings.size_for(501) is None


def test_docker_run_keeps_every_argument_whole() -> None:
    """Values with shell syntax stay single arguments; S3 flags per provider; AWS data mount."""
    settings = parse_settings(asr_config("aws", dockerGpu=True, dataDirMountPath="/mnt/odm data"))
    hook = webhook_url("http://cluster.example:3000/", "s3cr;et")
    argv = docker_run_command(settings, "tok'en $(reboot)", hook)
    assert argv[:7] == ["docker", "run", "-d", "-p", "3000:3000", "--gpus", "all"]
    assert argv[7:9] == ["--mount", "type=bind,source=/mnt/odm data,target=/var/www/data"]
    assert argv[9:12] == ["opendronemap/nodeodm", "-q", "1"]
    assert argv[argv.index("--s3_access_key") + 1] == "AKIAFAKE"
    assert argv[argv.index("--s3_acl") + 1] == "public-read"
    assert argv[-2:] == ["--token", "tok'en $(reboot)"]
    assert argv[-4:-2] == ["--webhook", "http://cluster.example:3000/commit?secret=s3cr%3Bet"]
    do = parse_settings(asr_config("digitalocean", s3={"ignoreSSL": True}))
    do_argv = docker_run_command(do, "t", "http://x/commit")
    assert "--s3_ignore_ssl" in do_argv and "--s3_acl" not in do_argv and "--mount" not in do_argv


def test_swap_is_ram_times_factor() -> None:
    assert swap_commands(2_000_000, 0.5, sudo=True)[0] == ["sudo", "fallocate", "-l", "1000000K", "/swapfile"]
    assert [c[0] for c in swap_commands(1000, 1, sudo=False)] == ["fallocate", "chmod", "mkswap", "swapon"]
    assert swap_commands(2_000_000, 0, sudo=False) == []


@pytest.mark.parametrize(
    ("provider", "credentials", "expected"),
    [
        (
            "digitalocean",
            {"accessToken": "s"},
            "docker-machine create --driver digitalocean --digitalocean-access-token **** "
            "--digitalocean-region nyc3 --digitalocean-image ubuntu-16-04-x64 --digitalocean-size small "
            "--digitalocean-monitoring=true --digitalocean-tags clusterodm 'clusterodm-30-<id>'",
        ),
        (
            "aws",
            {"accessKey": "k", "secretKey": "s", "securityGroup": "sg"},
            "docker-machine create --driver amazonec2 --amazonec2-access-key **** "
            "--amazonec2-secret-key **** --amazonec2-region us-west-2 --amazonec2-instance-type small "
            "--amazonec2-security-group sg 'clusterodm-30-<id>'",
        ),
        (
            "hetzner",
            {"apiToken": "e"},
            "docker-machine create --driver hetzner --hetzner-api-token **** --hetzner-server-location "
            "fsn1 --hetzner-server-type small --hetzner-image ubuntu-18.04 'clusterodm-30-<id>'",
        ),
    ],
)
def test_viewcmd_masks_secret_arguments_whatever_they_look_like(
    provider: str, credentials: dict[str, str], expected: str
) -> None:
    """ASR VIEWCMD hides the values of secret flags, not every occurrence of their text."""
    from clusterodm.autoscale.scaler import view_command

    settings = parse_settings(asr_config(provider, **credentials))
    assert view_command(settings, 30, settings.provider.secrets(settings)) == expected


def test_masked_command_by_flag_name() -> None:
    from clusterodm.autoscale.machine import is_secret_flag, masked_command

    for flag in ("--digitalocean-access-token", "--amazonec2-secret-key", "--scaleway-token", "--x-password"):
        assert is_secret_flag(flag), flag
    for flag in ("--digitalocean-region", "--amazonec2-tags", "--engine-install-url", "--keyboard"):
        assert not is_secret_flag(flag), flag
    argv = ["create", "--azure-client-secret=s", "--opt", "hunter2", "--last-token"]
    assert masked_command(argv, ["hunter2"]) == "create --azure-client-secret=**** --opt **** --last-token"
