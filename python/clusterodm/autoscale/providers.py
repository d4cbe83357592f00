"""Cloud providers: docker-machine driver, defaults, required keys and create arguments.

Every function here is pure (settings in, argument list out) so each provider's command line
can be table-tested; values resolved through a cloud API (snapshots, key ids) come in `resolved`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterodm.autoscale.config import AsrSettings

Resolved = dict[str, str]
ArgsBuilder = Callable[["AsrSettings", dict[str, Any], int, Resolved], list[str]]

_S3_KEYS = {
    "accessKey": "CHANGEME!",
    "secretKey": "CHANGEME!",
    "endpoint": "CHANGEME!",
    "bucket": "CHANGEME!",
    "ignoreSSL": False,
}
_S3_REQUIRED = ("s3.accessKey", "s3.secretKey", "s3.endpoint", "s3.bucket", "s3.ignoreSSL")


@dataclass(frozen=True)
class ProviderSpec:
    """What differs between providers; the autoscaler itself is provider-agnostic."""

    name: str
    driver: str
    defaults: dict[str, Any]
    required: tuple[str, ...]
    limit_key: str
    region_key: str
    build_args: ArgsBuilder
    secret_keys: tuple[str, ...]
    """Dotted keys whose values must never be shown (logs, ASR VIEWCMD)."""
    sudo: bool = False
    """Remote setup commands need sudo (the AWS image logs in as an unprivileged user)."""
    s3_credentials: tuple[str, str] = ("s3.accessKey", "s3.secretKey")

    def create_args(
        self, settings: AsrSettings, size: dict[str, Any], attempt: int, resolved: Resolved | None = None
    ) -> list[str]:
        """`--driver <d> <provider flags> [--engine-install-url U]`; the caller appends the hostname."""
        args = ["--driver", self.driver, *self.build_args(settings, size, attempt, resolved or {})]
        install_url = settings.get("engineInstallUrl")
        if isinstance(install_url, str) and install_url:
            args += ["--engine-install-url", install_url]
        return args

    def s3_flags(self, settings: AsrSettings) -> list[str]:
        """NodeODM's S3 flags for `docker run` (results are uploaded there when a task ends)."""
        access, secret = (str(settings.get(k, "")) for k in self.s3_credentials)
        flags = ["--s3_access_key", access, "--s3_secret_key", secret]
        flags += ["--s3_endpoint", str(settings.get("s3.endpoint", ""))]
        flags += ["--s3_bucket", str(settings.get("s3.bucket", ""))]
        if self.name == "aws":
            flags += ["--s3_acl", str(settings.get("s3.acl", "public-read"))]
        elif settings.get("s3.ignoreSSL") is True:
            flags.append("--s3_ignore_ssl")
        return flags

    def secrets(self, settings: AsrSettings) -> list[str]:
        values = [settings.get(k) for k in (*self.secret_keys, *self.s3_credentials)]
        values.append(settings.get("dockerRegistry.password"))
        return [v for v in values if isinstance(v, str) and v]


def _opt(flag: str, value: Any) -> list[str]:
    """`[flag, value]` when value is set (non-empty string or number), else nothing."""
    if value is None or value == "" or isinstance(value, bool):
        return []
    return [flag, str(value)]


def _csv(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value) if value else ""


def _digitalocean(s: AsrSettings, size: dict[str, Any], attempt: int, resolved: Resolved) -> list[str]:
    args = ["--digitalocean-access-token", str(s.get("accessToken"))]
    args += ["--digitalocean-region", resolved.get("region") or str(s.pick("region", attempt))]
    args += ["--digitalocean-image", resolved.get("image") or str(s.get("image"))]
    args += ["--digitalocean-size", str(size["slug"])]
    if s.get("monitoring") is True:
        args.append("--digitalocean-monitoring=true")
    if tags := _csv(s.get("tags")):
        args += ["--digitalocean-tags", tags]
    args += _opt("--digitalocean-ssh-key-fingerprint", s.get("sshKey.fingerprint"))
    args += _opt("--digitalocean-ssh-key-path", s.get("sshKey.path"))
    return args


def _hetzner(s: AsrSettings, size: dict[str, Any], attempt: int, resolved: Resolved) -> list[str]:
    args = ["--hetzner-api-token", str(s.get("apiToken"))]
    args += ["--hetzner-server-location", str(s.pick("location", attempt))]
    args += ["--hetzner-server-type", str(size["slug"])]
    if s.get("snapshot") is True:
        args += ["--hetzner-image-id", resolved.get("image_id") or str(s.get("imageId", ""))]
    else:
        args += ["--hetzner-image", str(s.get("image"))]
    key_id = resolved.get("key_id") or s.get("sshKey.id")
    if key_id:
        args += ["--hetzner-existing-key-id", str(key_id)]
        args += _opt("--hetzner-existing-key-path", s.get("sshKey.path"))
    return args


def _scaleway(s: AsrSettings, size: dict[str, Any], attempt: int, resolved: Resolved) -> list[str]:
    return [
        "--scaleway-organization",
        str(s.get("organization")),
        "--scaleway-token",
        str(s.get("secretToken")),
        "--scaleway-region",
        str(s.pick("region", attempt)),
        "--scaleway-image",
        str(s.get("image")),
        "--scaleway-commercial-type",
        str(size["slug"]),
    ]


def _aws(s: AsrSettings, size: dict[str, Any], attempt: int, resolved: Resolved) -> list[str]:
    args = ["--amazonec2-access-key", str(s.get("accessKey"))]
    args += ["--amazonec2-secret-key", str(s.get("secretKey"))]
    args += ["--amazonec2-region", str(s.pick("region", attempt))]
    args += _opt("--amazonec2-ami", s.get("ami"))
    args += ["--amazonec2-instance-type", str(size["slug"])]
    args += _opt("--amazonec2-root-size", size.get("storage"))
    args += ["--amazonec2-security-group", str(s.get("securityGroup"))]
    if s.get("monitoring") is True:
        args.append("--amazonec2-monitoring")
    if s.get("spot") is True:
        args.append("--amazonec2-request-spot-instance")
        args += _opt("--amazonec2-spot-price", size.get("spotPrice"))
    if tags := _csv(s.get("tags")):
        args += ["--amazonec2-tags", tags]
    if s.get("usePrivateAddress") is True:
        args.append("--amazonec2-use-private-address")
        if s.get("assignPrivateAddressOnly") is True:
            args.append("--amazonec2-private-address-only")
    args += _opt("--amazonec2-zone", s.get("zone"))
    args += _opt("--amazonec2-vpc-id", s.get("vpc"))
    args += _opt("--amazonec2-subnet-id", s.get("subnet"))
    args += _opt("--amazonec2-iam-instance-profile", s.get("iamrole"))
    return args


DIGITALOCEAN = ProviderSpec(
    name="digitalocean",
    driver="digitalocean",
    defaults={
        "accessToken": "CHANGEME!",
        "s3": dict(_S3_KEYS),
        "region": "nyc3",
        "monitoring": True,
        "tags": ["clusterodm"],
        "image": "ubuntu-16-04-x64",
        "snapshot": False,
        "sshKey": {"fingerprint": "", "path": ""},
        "dropletsLimit": -1,
        "imageSizeMapping": [
            {"maxImages": 40, "slug": "s-2vcpu-2gb"},
            {"maxImages": 250, "slug": "s-4vcpu-8gb"},
            {"maxImages": 500, "slug": "s-6vcpu-16gb"},
        ],
    },
    required=("accessToken", *_S3_REQUIRED),
    limit_key="dropletsLimit",
    region_key="region",
    build_args=_digitalocean,
    secret_keys=("accessToken",),
)

HETZNER = ProviderSpec(
    name="hetzner",
    driver="hetzner",
    defaults={
        "apiToken": "CHANGEME!",
        "s3": dict(_S3_KEYS),
        "location": "fsn1",
        "image": "ubuntu-18.04",
        "snapshot": False,
        "sshKey": {"fingerprint": "", "path": ""},
        "machinesLimit": -1,
        "imageSizeMapping": [
            {"maxImages": 40, "slug": "cx21"},
            {"maxImages": 250, "slug": "cx41"},
            {"maxImages": 500, "slug": "cx51"},
        ],
    },
    required=("apiToken", "image", *_S3_REQUIRED),
    limit_key="machinesLimit",
    region_key="location",
    build_args=_hetzner,
    secret_keys=("apiToken",),
)

SCALEWAY = ProviderSpec(
    name="scaleway",
    driver="scaleway",
    defaults={
        "organization": "CHANGEME!",
        "secretToken": "CHANGEME!",
        "s3": dict(_S3_KEYS),
        "region": "par1",
        "image": "ubuntu-xenial",
        "machinesLimit": -1,
        "imageSizeMapping": [
            {"maxImages": 40, "slug": "DEV1-M"},
            {"maxImages": 250, "slug": "GP1-S"},
        ],
    },
    required=("organization", "secretToken", *_S3_REQUIRED),
    limit_key="machinesLimit",
    region_key="region",
    build_args=_scaleway,
    secret_keys=("secretToken",),
)

AWS = ProviderSpec(
    name="aws",
    driver="amazonec2",
    defaults={
        "accessKey": "CHANGEME!",
        "secretKey": "CHANGEME!",
        "s3": {"endpoint": "CHANGEME!", "bucket": "CHANGEME!", "acl": "public-read"},
        "securityGroup": "CHANGEME!",
        "region": "us-west-2",
        "zone": "",
        "vpc": "",
        "subnet": "",
        "usePrivateAddress": False,
        "assignPrivateAddressOnly": False,
        "monitoring": False,
        "tags": [],
        "ami": "",
        "spot": False,
        "iamrole": "",
        "nodeSetupCmd": "",
        "dockerDataDirMountPath": "",
        "instanceLimit": -1,
        "imageSizeMapping": [
            {"maxImages": 40, "slug": "t3.medium", "storage": 60, "spotPrice": 0.05},
            {"maxImages": 250, "slug": "m5.xlarge", "storage": 100, "spotPrice": 0.2},
        ],
    },
    required=("accessKey", "secretKey", "s3.endpoint", "s3.bucket", "s3.acl", "securityGroup"),
    limit_key="instanceLimit",
    region_key="region",
    build_args=_aws,
    secret_keys=("accessKey", "secretKey"),
    sudo=True,
    s3_credentials=("accessKey", "secretKey"),
)

PROVIDERS: dict[str, ProviderSpec] = {p.name: p for p in (DIGITALOCEAN, HETZNER, SCALEWAY, AWS)}
