"""S3 through a real moto server: bucket check at start, redirects, presigned URLs, traversal refused."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from autoscale.asrkit import FakeMachines, MotoS3, asr_config, write_asr
from clusterodm.autoscale import AsrConfigError, Autoscaler
from clusterodm.autoscale.config import parse_settings
from clusterodm.autoscale.s3 import S3Downloads, make_client, object_key, probe_bucket
from clusterodm.config import Config
from clusterodm.services import Cluster

UUID = "1b6a5d8c-3f2e-4c1a-9b7d-0e5f4a3b2c1d"


def s3_settings(moto: MotoS3, bucket: str, **s3: object) -> dict[str, object]:
    return asr_config(s3={"endpoint": moto.url, "bucket": bucket, **s3})


def test_bucket_check(moto_s3: MotoS3, caplog: pytest.LogCaptureFixture) -> None:
    bucket = moto_s3.create_bucket("results")
    settings = parse_settings(s3_settings(moto_s3, bucket))
    with caplog.at_level(logging.INFO, "clusterodm.autoscale.s3"):
        probe_bucket(make_client(settings), bucket)
    assert "Can write to S3 bucket results" in caplog.text
    assert moto_s3.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # the probe was deleted
    missing = parse_settings(s3_settings(moto_s3, "no-such-bucket"))
    with pytest.raises(AsrConfigError) as err:
        probe_bucket(make_client(missing), "no-such-bucket")
    assert len(err.value.problems) == 1 and "cannot write to S3 bucket 'no-such-bucket'" in str(err.value)


def test_object_keys_stay_under_the_task() -> None:
    assert object_key(UUID, "all.zip") == f"{UUID}/all.zip"
    assert object_key(UUID, "orthophoto.tif") == f"{UUID}/odm_orthophoto/odm_orthophoto.tif"
    assert object_key(UUID, "odm_dem/dsm.tif") == f"{UUID}/odm_dem/dsm.tif"
    for bad in ("../other/all.zip", "a/../../x", "./all.zip", "/etc/passwd", "a//b", "a\\..\\b", "", "x\n"):
        assert object_key(UUID, bad) is None, bad
    assert object_key("../x-a-b-c-d", "all.zip") is None


def test_public_redirect_keeps_base_path_and_query() -> None:
    s3 = S3Downloads("https://cdn.example.com/odm/results?v=1")
    r = asyncio.run(s3.download_response(UUID, "orthophoto.tif"))
    assert r.status_code == 302
    assert r.headers["location"] == (
        f"https://cdn.example.com/odm/results/{UUID}/odm_orthophoto/odm_orthophoto.tif?v=1"
    )
    refused = asyncio.run(s3.download_response(UUID, "../0a-b-c-d-e/all.zip"))
    assert refused.status_code == 200 and refused.body == b'{"error":"Invalid asset: ../0a-b-c-d-e/all.zip"}'


def test_downloads_from_the_asr_bucket(
    tmp_path: Path, moto_s3: MotoS3, fake_dm: FakeMachines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--asr` with a private bucket: start-up checks pass, downloads get presigned URLs that work."""
    bucket = moto_s3.create_bucket("private-results")
    moto_s3.client.put_object(Bucket=bucket, Key=f"{UUID}/all.zip", Body=b"zip bytes")
    asr = write_asr(tmp_path / "asr.json", s3_settings(moto_s3, bucket, acl="private"))
    monkeypatch.setenv("PATH", fake_dm.env["PATH"])
    monkeypatch.setenv("FAKE_DM_DIR", str(fake_dm.state))
    config = Config(data_dir=tmp_path / "data", asr=str(asr), public_address="http://127.0.0.1:9")

    async def scenario() -> None:
        cluster = await Cluster.open(config)
        try:
            assert isinstance(cluster.autoscaler, Autoscaler) and cluster.s3 is not None
            r = await cluster.s3.download_response(UUID, "all.zip")
            assert r.status_code == 302
            location = r.headers["location"]
            assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
            assert urlsplit(location).path == f"/{bucket}/{UUID}/all.zip"
            got = await cluster.http.get(location)
            assert got.status_code == 200 and got.content == b"zip bytes"
            unsigned = await cluster.http.get(location.split("?")[0])
            assert unsigned.status_code == 403  # the object itself is private
        finally:
            await cluster.close()

    asyncio.run(scenario())
    assert fake_dm.commands("--version")


def test_public_bucket_redirects_to_the_object(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.create_bucket("public-results")
    key = f"{UUID}/odm_orthophoto/odm_orthophoto.tif"
    moto_s3.client.put_object(Bucket=bucket, Key=key, Body=b"tif", ACL="public-read")  # as NodeODM uploads
    s3 = S3Downloads(f"{moto_s3.url}/{bucket}")
    location = asyncio.run(s3.download_response(UUID, "orthophoto.tif")).headers["location"]
    got = httpx.get(location, timeout=5)
    assert got.status_code == 200 and got.content == b"tif"
