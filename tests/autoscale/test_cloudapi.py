"""Snapshot and SSH key lookups against a stand-in cloud API served over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from granian.constants import Interfaces
from granian.server.embed import Server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from autoscale.asrkit import asr_config
from clusterodm.autoscale import AutoscaleError
from clusterodm.autoscale.cloudapi import resolve
from clusterodm.autoscale.config import parse_settings
from support.procs import free_port


def cloud_api(seen: list[dict[str, Any]]) -> Starlette:
    async def snapshots(request: Request) -> JSONResponse:
        seen.append({"path": request.url.path, "auth": request.headers.get("authorization")})
        return JSONResponse({"snapshots": [{"id": 555, "name": "odm-snap", "regions": ["fra1", "ams3"]}]})

    async def images(request: Request) -> JSONResponse:
        return JSONResponse({"images": [{"id": 77, "description": "odm-image"}]})

    async def keys(request: Request) -> JSONResponse:
        found = request.query_params.get("fingerprint") == "aa:bb"
        return JSONResponse({"ssh_keys": [{"id": 9}] if found else []})

    return Starlette(
        routes=[Route("/v2/snapshots", snapshots), Route("/v1/images", images), Route("/v1/ssh_keys", keys)]
    )


def test_snapshots_and_keys_are_resolved() -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        server = Server(cloud_api(seen), address="127.0.0.1", port=port, interface=Interfaces.ASGINL)
        serving = asyncio.create_task(server.serve())
        try:
            async with httpx.AsyncClient() as http:
                async with asyncio.timeout(10):
                    while True:
                        try:
                            await http.get(api)
                            break
                        except httpx.HTTPError:
                            await asyncio.sleep(0.05)
                do = parse_settings(
                    asr_config(snapshot=True, image="odm-snap", region=["nyc3", "ams3"], apiUrl=api)
                )
                assert await resolve(do, 1, http) == {"image": "555", "region": "fra1"}
                assert await resolve(do, 2, http) == {"image": "555", "region": "ams3"}
                assert seen[0]["auth"] == "Bearer do-secret-token"
                size = do.size_for(1)
                assert size is not None
                args = do.provider.create_args(do, size, 1, await resolve(do, 1, http))
                assert args[args.index("--digitalocean-image") + 1] == "555"

                hz = asr_config("hetzner", snapshot=True, image="odm-image", apiUrl=api)
                hz["sshKey"] = {"fingerprint": "aa:bb", "path": ""}
                assert await resolve(parse_settings(hz), 1, http) == {"image_id": "77", "key_id": "9"}
                hz["sshKey"]["fingerprint"] = "cc:dd"
                with pytest.raises(AutoscaleError, match="No Hetzner SSH key with fingerprint cc:dd"):
                    await resolve(parse_settings(hz), 1, http)
                missing = parse_settings(asr_config(snapshot=True, image="nope", apiUrl=api))
                with pytest.raises(AutoscaleError, match="No DigitalOcean snapshot named 'nope'"):
                    await resolve(missing, 1, http)
                assert await resolve(parse_settings(asr_config("scaleway")), 1, http) == {}
        finally:
            server.stop()
            await asyncio.wait_for(serving, 5)

    asyncio.run(scenario())
