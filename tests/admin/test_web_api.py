"""The admin web's JSON API and its access rules, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from support.admin_env import PASSWORD, Env
from support.clusterodm import ClusterODM
from support.procs import free_port

pytestmark = pytest.mark.both_backends  # on SQLite and on PostgreSQL: ids [sqlite], [pg]

JSON = {"Content-Type": "application/json"}


def test_info_and_node_list(env: Env) -> None:
    base = env.cluster.admin_url
    assert httpx.get(f"{base}/r/info", timeout=5).json()["name"] == "ClusterODM"
    r = httpx.get(f"{base}/r/node/list", timeout=5)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    nodes = r.json()
    assert [n["name"] for n in nodes] == [f"{s.host}:{s.port}" for s in env.sims]
    first = nodes[0]
    assert first["isOnline"] is True and first["isLocked"] is False and first["isAutoSpawned"] is False
    assert first["getTaskQueueCount"] == 1 and first["getMaxParallelTasks"] == 2
    assert first["getEngineInfo"] == {"engine": "odm", "engineVersion": "3.5.1"}
    assert first["getVersion"] == "2.2.4" and first["availableSlots"] == 1
    assert 0 <= first["lastPollAgeMs"] < 60_000
    assert first["nodeData"]["info"]["cpuCores"] >= 1 and "token" not in first["nodeData"]


def test_add_lock_unlock_delete(env: Env) -> None:
    base = env.cluster.admin_url
    port = free_port()
    add = {"hostname": "127.0.0.1", "port": port, "token": "web-secret-token"}
    assert httpx.post(f"{base}/r/node/add", json=add, timeout=5).json() == {"success": True}
    assert "error" in httpx.post(f"{base}/r/node/add", json=add, timeout=5).json()
    bad = {"hostname": "127.0.0.1", "port": "x"}
    assert httpx.post(f"{base}/r/node/add", json=bad, timeout=5).json() == {"error": "Invalid"}
    listed = httpx.get(f"{base}/r/node/list", timeout=5)
    assert "web-secret-token" not in listed.text
    assert listed.json()[3]["name"] == f"127.0.0.1:{port}"
    assert httpx.post(f"{base}/r/node/lock", json={"number": 4}, timeout=5).json() is True
    assert httpx.get(f"{base}/r/node/list", timeout=5).json()[3]["isLocked"] is True
    assert httpx.post(f"{base}/r/node/unlock", json={"number": 4}, timeout=5).json() is True
    assert httpx.post(f"{base}/r/node/lock", json={"number": 9}, timeout=5).json() is False
    r = httpx.post(f"{base}/r/node/lock", json={}, timeout=5)
    assert r.status_code == 403 and r.content == b""
    r = httpx.request("DELETE", f"{base}/r/node", json={"number": 4}, timeout=5)
    assert r.json() is True
    assert len(httpx.get(f"{base}/r/node/list", timeout=5).json()) == 3


def test_cross_origin_and_non_json_writes_are_refused(env: Env) -> None:
    base = env.cluster.admin_url
    url = f"{base}/r/node/lock"
    evil = {"Origin": "http://evil.example", **JSON}
    assert httpx.post(url, content=b'{"number": 1}', headers=evil, timeout=5).status_code == 403
    cross = {"Sec-Fetch-Site": "cross-site", **JSON}
    assert httpx.post(url, content=b'{"number": 1}', headers=cross, timeout=5).status_code == 403
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": base}
    assert httpx.post(url, content=b"number=1", headers=form, timeout=5).status_code == 415
    same = {"Origin": base, "Sec-Fetch-Site": "same-origin", **JSON}
    assert httpx.post(url, content=b'{"number": 1}', headers=same, timeout=5).json() is True
    assert httpx.post(f"{base}/r/node/unlock", json={"number": 1}, headers=same, timeout=5).json() is True
    preflight = httpx.options(url, headers={"Origin": "http://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in preflight.headers
    # Without a password, a DNS name (rebinding) cannot reach the loopback-only admin.
    rebound = httpx.get(f"{base}/r/node/list", headers={"Host": "evil.example"}, timeout=5)
    assert rebound.status_code == 403
    assert not any(n["isLocked"] for n in httpx.get(f"{base}/r/node/list", timeout=5).json())


def test_task_list(env: Env) -> None:
    tasks = {t["uuid"]: t for t in httpx.get(f"{env.cluster.admin_url}/r/task/list", timeout=10).json()}
    routed = tasks[env.task_uuid]
    a = env.sims[0]
    assert routed["node"] == f"{a.host}:{a.port}" and routed["nodeNumber"] == 1
    assert routed["status"] in (10, 20) and routed["imagesCount"] == 4 and routed["name"] == "Survey"
    assert isinstance(routed["progress"], int | float) and routed["heldBy"] == "node"
    if env.local_uuid in tasks:  # the CLI task tests may have removed it
        assert tasks[env.local_uuid]["heldBy"] == "cluster" and tasks[env.local_uuid]["imagesCount"] == 7


def test_basic_auth_and_signout(guarded: ClusterODM) -> None:
    base = guarded.admin_url
    r = httpx.get(f"{base}/r/node/list", timeout=5)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="ClusterODM"'
    assert httpx.get(f"{base}/", auth=("admin", "nope"), timeout=5).status_code == 401
    assert httpx.get(f"{base}/r/info", auth=("root", PASSWORD), timeout=5).status_code == 401
    assert httpx.get(f"{base}/r/node/list", auth=("admin", PASSWORD), timeout=5).json() == []
    page = httpx.get(f"{base}/", auth=("admin", PASSWORD), timeout=5)
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert httpx.get(f"{base}/static/app.js", auth=("admin", PASSWORD), timeout=5).status_code == 200
    out = httpx.get(f"{base}/signout", timeout=5)
    assert out.status_code == 401 and "Signed out" in out.text and "www-authenticate" not in out.headers
    # With a password, a cross-site page still cannot use the browser's cached credentials.
    evil = {"Origin": "http://evil.example"}
    body = {"hostname": "x", "port": 1}
    r = httpx.post(f"{base}/r/node/add", json=body, headers=evil, auth=("admin", PASSWORD), timeout=5)
    assert r.status_code == 403
