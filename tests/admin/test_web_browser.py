"""The admin page in headless Chromium (Debian's binary, driven by Playwright): log in, see nodes,
add and lock nodes, watch a task's progress; a cross-site page cannot change anything."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from support.admin_env import LOCAL_TASK, PASSWORD, QUEUE_TOKEN, Env, QueueEnv, start_env, start_queue_env
from support.simnode import SimNode

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AUTH = ("admin", PASSWORD)


@pytest.fixture(scope="module")
def guarded_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("admin-web")
    cluster, sims, task_uuid = start_env(workdir, "--admin-pass", PASSWORD)
    try:
        deadline = time.monotonic() + 15
        while sum(n["isOnline"] for n in httpx.get(f"{cluster.admin_url}/r/node/list", auth=AUTH).json()) < 3:
            assert time.monotonic() < deadline, "nodes did not come online"
            time.sleep(0.05)
        yield Env(cluster, sims, task_uuid, LOCAL_TASK)
    finally:
        cluster.stop()
        for sim in sims:
            sim.stop()


@pytest.fixture(scope="module")
def queue_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueEnv]:
    """One one-slot node busy with a long task, two more tasks waiting at the proxy."""
    env = start_queue_env(tmp_path_factory.mktemp("admin-web-queue"), "--admin-pass", PASSWORD)
    try:
        yield env
    finally:
        env.cluster.stop()
        env.sim.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_admin_page(guarded_env: Env, browser: Browser, tmp_path: Path) -> None:
    env = guarded_env
    context = browser.new_context(
        http_credentials={"username": "admin", "password": PASSWORD}, viewport={"width": 1360, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(env.cluster.admin_url)
        expect(page.locator("#title")).to_have_text(
            "ClusterODM " + httpx.get(f"{env.cluster.admin_url}/r/info", auth=AUTH).json()["version"]
        )
        rows = page.locator("#nodes-body tr[data-node]")
        expect(rows).to_have_count(3)
        for i, sim in enumerate(env.sims):
            row = page.locator(f'#nodes-body tr[data-node="{sim.host}:{sim.port}"]')
            expect(row).to_contain_text("online")
            expect(row.locator("td").first).to_have_text(str(i + 1))
        expect(rows.nth(0)).to_contain_text("1 / 2")
        expect(rows.nth(0)).to_contain_text("odm 3.5.1")

        with SimNode(tmp_path, name="sim-d") as d:
            page.click("#add-node-open")
            page.fill("#add-hostname", d.host)
            page.fill("#add-port", str(d.port))
            page.click("#add-node-submit")
            added = page.locator(f'#nodes-body tr[data-node="{d.host}:{d.port}"]')
            expect(added.locator(".badge.ok")).to_have_text("online")  # polled at once on add
            expect(rows).to_have_count(4)

            second = rows.nth(1)
            second.locator('button[data-action="lock"]').click()
            expect(second.locator(".badge.warn")).to_have_text("locked")
            expect(second.locator('button[data-action="unlock"]')).to_be_visible()
            nodes = httpx.get(f"{env.cluster.admin_url}/r/node/list", auth=AUTH).json()
            assert [n["isLocked"] for n in nodes] == [False, True, False, False]

            task = page.locator(f'#tasks-body tr[data-task="{env.task_uuid}"]')
            expect(task).to_contain_text("running")
            expect(task).to_contain_text(f"{env.sims[0].host}:{env.sims[0].port}")
            bar = task.locator('[role="progressbar"]')
            deadline = time.monotonic() + 15
            while float(bar.get_attribute("aria-valuenow") or 0) <= 0:
                assert time.monotonic() < deadline, "the task's progress never moved"
                page.wait_for_timeout(200)
            expect(page.locator(f'#tasks-body tr[data-task="{LOCAL_TASK}"]')).to_contain_text("queued")
            expect(page.locator("#queue-body")).to_contain_text("No task is waiting")
            replica = page.locator("#replicas-body tr[data-replica]")  # one process on SQLite: it leads
            expect(replica).to_have_count(1)
            expect(replica).to_contain_text("(this one)")
            expect(replica.locator(".badge.info")).to_have_text("leader")
            expect(replica).to_contain_text(f"http://{env.cluster.host}:{env.cluster.port}")
            page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
            assert (tmp_path / "admin.png").stat().st_size > 10_000
    finally:
        context.close()


def test_cross_site_page_cannot_lock(guarded_env: Env, browser: Browser) -> None:
    """A page of another origin posts to the admin with the browser's cached credentials: refused."""
    env = guarded_env
    context = browser.new_context(http_credentials={"username": "admin", "password": PASSWORD})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(f"{env.cluster.url}/auth/info")  # any page of another origin (the proxy's port)
        statuses = page.evaluate(
            """async (admin) => {
                const out = [];
                for (const type of ["application/json", "text/plain"]) {
                    try {
                        const r = await fetch(admin + "/r/node/lock", {method: "POST", credentials: "include",
                            headers: {"Content-Type": type}, body: JSON.stringify({number: 3})});
                        out.push(r.status);
                    } catch (e) { out.push("blocked"); }
                }
                await fetch(admin + "/r/node/lock", {method: "POST", mode: "no-cors", credentials: "include",
                    headers: {"Content-Type": "text/plain"}, body: JSON.stringify({number: 3})});
                return out;
            }""",
            env.cluster.admin_url,
        )
        assert all(s in ("blocked", 403) for s in statuses), statuses
        nodes = httpx.get(f"{env.cluster.admin_url}/r/node/list", auth=AUTH).json()
        assert nodes[2]["isLocked"] is False
    finally:
        context.close()


def test_queue_table(queue_env: QueueEnv, browser: Browser) -> None:
    """The Queue card lists the tasks waiting at the proxy in the order they will go, with their
    images and waited time, and nothing of their owner; a cancelled one leaves the table."""
    env = queue_env
    running, first, second = env.uuids
    context = browser.new_context(http_credentials={"username": "admin", "password": PASSWORD})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(env.cluster.admin_url)
        rows = page.locator("#queue-body tr[data-queued]")
        expect(rows).to_have_count(2)  # the running task has the node's slot, not a queue place
        for row, (position, uuid, images) in zip(rows.all(), [(1, first, 5), (2, second, 6)], strict=True):
            cells = row.locator("td")
            expect(cells.nth(0)).to_have_text(str(position))
            expect(cells.nth(1)).to_have_text(uuid)
            expect(cells.nth(2).locator(".badge.info")).to_have_text("waiting")
            expect(cells.nth(3)).to_have_text(str(images))
            expect(cells.nth(4)).to_have_text(re.compile(r"^\d+ s$"))
        assert QUEUE_TOKEN not in page.content()
        cancel = httpx.post(f"{env.cluster.url}/task/cancel?token={QUEUE_TOKEN}", data={"uuid": first})
        assert cancel.json() == {"success": True}
        page.reload()
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td").nth(1)).to_have_text(second)
        expect(rows.first.locator("td").nth(0)).to_have_text("1")
        assert running not in page.locator("#queue").inner_text()
    finally:
        context.close()
