"""Task downloads served from S3, where auto-spawned nodes upload their results.

`/task/{uuid}/download/{asset}` becomes the object key `{uuid}/{asset}`, normalised so that it
cannot leave the task's prefix (spec 8.21). Public buckets get a redirect to the object; private
ones a short-lived presigned URL, so the object never passes through (or is buffered by) us.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.responses import RedirectResponse, Response

from clusterodm.autoscale.errors import AsrConfigError
from clusterodm.proxy.responses import json_error

if TYPE_CHECKING:
    from clusterodm.autoscale.config import AsrSettings
    from clusterodm.autoscale.scaler import Autoscaler

log = logging.getLogger("clusterodm.autoscale.s3")

PRESIGN_EXPIRES_S = 300
PUBLIC_ACL = "public-read"
_UUID = re.compile(r"\w+-\w+-\w+-\w+-\w+", re.ASCII)
ASSET_ALIASES = {"orthophoto.tif": "odm_orthophoto/odm_orthophoto.tif"}


def object_key(uuid: str, asset: str) -> str | None:
    """`{uuid}/{asset}` with NodeODM's aliases; None when it would escape `{uuid}/`."""
    if not _UUID.fullmatch(uuid):
        return None
    asset = ASSET_ALIASES.get(asset, asset)
    parts = asset.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in asset:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in asset):
        return None
    return f"{uuid}/{asset}"


def endpoint_url(endpoint: str) -> str:
    """S3 endpoints are host names in ASR files; https unless a scheme is given."""
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def public_base_url(settings: AsrSettings) -> str:
    """Where a bucket's objects are public: virtual-host style for a bare host, path style otherwise."""
    endpoint = str(settings.get("s3.endpoint"))
    bucket = str(settings.get("s3.bucket"))
    if "://" in endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}"
    return f"https://{bucket}.{endpoint}"


def make_client(settings: AsrSettings) -> Any:
    """A boto3 S3 client for the ASR bucket (credentials as the provider's nodes get them)."""
    import boto3
    from botocore.config import Config as BotoConfig

    access, secret = (str(settings.get(k, "")) for k in settings.provider.s3_credentials)
    endpoint = str(settings.get("s3.endpoint"))
    region = settings.get("s3.region") or (
        settings.pick("region", 1) if settings.provider.name == "aws" else "us-east-1"
    )
    style = "path" if "://" in endpoint else "auto"
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url(endpoint),
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=str(region),
        verify=settings.get("s3.ignoreSSL") is not True,
        config=BotoConfig(
            s3={"addressing_style": style},
            connect_timeout=5,
            read_timeout=15,
            retries={"max_attempts": 2},
            signature_version="s3v4",
        ),
    )


def probe_bucket(client: Any, bucket: str) -> None:
    """Write and delete a small object: nodes must be able to upload results there."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = f".clusterodm-write-test-{secrets.token_hex(6)}"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
        client.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as e:
        raise AsrConfigError(
            [f"cannot write to S3 bucket {bucket!r} ({e}); check the s3 keys, endpoint and bucket of --asr"]
        ) from None
    log.info("Can write to S3 bucket %s", bucket)


class S3Downloads:
    """Answers `/task/{uuid}/download/{asset}` from the bucket instead of a node."""

    def __init__(self, base_url: str, *, client: Any = None, bucket: str = "") -> None:
        self.base_url = base_url
        self._client = client  # set for private buckets: downloads get presigned URLs
        self._bucket = bucket

    @classmethod
    def from_config(cls, downloads_from_s3: str, autoscaler: Autoscaler | None) -> S3Downloads | None:
        """`--downloads-from-s3` wins; otherwise the autoscaler's bucket; None without either."""
        settings = autoscaler.settings if autoscaler is not None else None
        client = None
        bucket = ""
        if settings is not None:
            acl = settings.get("s3.acl")
            if isinstance(acl, str) and acl and acl != PUBLIC_ACL:
                client, bucket = autoscaler.s3_client, str(settings.get("s3.bucket"))  # type: ignore[union-attr]
        base = downloads_from_s3
        if not base and settings is not None:
            base = public_base_url(settings)
        if not base:
            return None
        log.info("Task downloads are served from S3 (%s)", "presigned URLs" if client else base)
        return cls(base, client=client, bucket=bucket)

    def url_for(self, key: str) -> str:
        if self._client is not None:
            return str(
                self._client.generate_presigned_url(
                    "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=PRESIGN_EXPIRES_S
                )
            )
        base = urlsplit(self.base_url)
        path = f"{base.path.rstrip('/')}/{quote(key)}"
        return urlunsplit((base.scheme, base.netloc, path, base.query, ""))

    async def download_response(self, uuid: str, asset: str) -> Response:
        """A temporary redirect to the object (never 301: it must not be cached for good).

        Async for the proxy's sake; presigning is a local computation, nothing is fetched.
        """
        key = object_key(uuid, asset)
        if key is None:
            return json_error(f"Invalid asset: {asset}")
        return RedirectResponse(self.url_for(key), status_code=302)
