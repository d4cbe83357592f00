"""Values a provider's create arguments need from its cloud API: snapshot ids, SSH key ids.

DigitalOcean `snapshot: true` names a private snapshot (its id replaces `image`, and the region
switches to one holding the snapshot); Hetzner `snapshot: true` names a snapshot by description
and `sshKey.fingerprint` must become a key id. `apiUrl` in the ASR file overrides the API base.
"""

from __future__ import annotations

from typing import Any

import httpx

from clusterodm.autoscale.config import AsrSettings
from clusterodm.autoscale.errors import AutoscaleError
from clusterodm.autoscale.providers import Resolved

API_URLS = {"digitalocean": "https://api.digitalocean.com", "hetzner": "https://api.hetzner.cloud"}


async def _get(http: httpx.AsyncClient, settings: AsrSettings, path: str, token_key: str) -> Any:
    base = str(settings.get("apiUrl") or API_URLS[settings.provider.name]).rstrip("/")
    headers = {"Authorization": f"Bearer {settings.get(token_key)}"}
    try:
        response = await http.get(base + path, headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise AutoscaleError(f"{settings.provider.name} API request {path} failed: {e}") from None


async def resolve(settings: AsrSettings, attempt: int, http: httpx.AsyncClient) -> Resolved:
    """Look up what the create arguments of attempt `attempt` need; {} when nothing is needed."""
    name = settings.provider.name
    if name == "digitalocean" and settings.get("snapshot") is True:
        return await _digitalocean_snapshot(settings, attempt, http)
    if name != "hetzner":
        return {}
    out: Resolved = {}
    if settings.get("snapshot") is True and not settings.get("imageId"):
        data = await _get(http, settings, "/v1/images?type=snapshot&per_page=50", "apiToken")
        wanted = settings.get("image")
        found = [i for i in data.get("images", []) if i.get("description") == wanted]
        if not found:
            raise AutoscaleError(f"No Hetzner snapshot with description {wanted!r}")
        out["image_id"] = str(found[0]["id"])
    fingerprint = settings.get("sshKey.fingerprint")
    if fingerprint and not settings.get("sshKey.id"):
        data = await _get(http, settings, f"/v1/ssh_keys?fingerprint={fingerprint}", "apiToken")
        keys = data.get("ssh_keys", [])
        if not keys:
            raise AutoscaleError(f"No Hetzner SSH key with fingerprint {fingerprint}")
        out["key_id"] = str(keys[0]["id"])
    return out


async def _digitalocean_snapshot(settings: AsrSettings, attempt: int, http: httpx.AsyncClient) -> Resolved:
    data = await _get(http, settings, "/v2/snapshots?resource_type=droplet&per_page=200", "accessToken")
    wanted = settings.get("image")
    found = [s for s in data.get("snapshots", []) if s.get("name") == wanted]
    if not found:
        raise AutoscaleError(f"No DigitalOcean snapshot named {wanted!r}")
    snapshot = found[0]
    region = str(settings.pick("region", attempt))
    regions = snapshot.get("regions") or [region]
    return {"image": str(snapshot["id"]), "region": region if region in regions else str(regions[0])}
