"""The admin page's charts and task detail view in headless Chromium, after real tasks ran through a
real clusterodm and simulator node; and the "no node yet" help of a cluster without nodes.

Screenshots of each view are saved under the test's temp folder (`dashboard.png`, `task.png`,
`no-nodes.png`) for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pyodm import Node as OdmNode

from support.admin_env import PASSWORD
from support.clusterodm import ClusterODM
from support.images import make_images
from support.simnode import SimNode

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
AUTH = ("admin", PASSWORD)
FAST_HISTORY = {"CLUSTERODM_HISTORY_INTERVAL_S": "0.2"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Browser, url: str) -> Page:
    context = browser.new_context(
        http_credentials={"username": "admin", "password": PASSWORD}, viewport={"width": 1360, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(url)
    return page


def attr(page: Page, selector: str, name: str) -> float:
    value = page.locator(selector).first.get_attribute(name)
    return float(value or 0)


def test_charts_and_task_detail(browser: Browser, tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", 5, size=200_000)
    with (
        SimNode(tmp_path, "--processing-seconds", "0.5") as fast,
        SimNode(tmp_path, "--processing-seconds", "3", name="sim-slow") as slow,
        ClusterODM(tmp_path, "--admin-pass", PASSWORD, nodes=[fast], env=FAST_HISTORY) as cluster,
    ):
        cluster.wait_online(1)
        client = OdmNode(cluster.host, cluster.port)
        done = client.create_task(images, {"orthophoto-resolution": 4}, name="Charted")
        done.wait_for_completion(interval=0.2)
        expected_output = done.output()
        assert expected_output, "the simulator printed no output"

        page = open_page(browser, cluster.admin_url)
        try:
            # The charts have points: tasks by status (one completed), upload throughput (the
            # images went through), and the node's queue against its 1 slot.
            completed = '#chart-statuses path[data-series="completed"]'
            page.wait_for_function(
                f"""() => {{ const p = document.querySelector('{completed}');
                    return p && Number(p.getAttribute('data-points')) > 3; }}"""
            )
            assert attr(page, "#chart-statuses svg", "data-max") >= 1
            assert attr(page, "#chart-upload svg", "data-max") > 0, "no upload throughput charted"
            assert attr(page, '#chart-upload path[data-series="upload"]', "data-points") > 3
            node_chart = page.locator(f'[data-node-chart="{fast.host}:{fast.port}"]')
            expect(node_chart).to_be_visible()
            slots = node_chart.locator('path[data-series="slots"]')
            assert float(slots.get_attribute("data-points") or 0) > 3
            assert float(node_chart.locator("svg").get_attribute("data-max") or 0) >= 1  # its slot
            expect(page.locator("#no-nodes")).to_be_hidden()
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000

            # The detail view of the finished task: its output, options, node and status changes.
            page.locator(f'#tasks-body tr[data-task="{done.uuid}"] a.task-link').click()
            expect(page.locator("#view-task")).to_be_visible()
            expect(page.locator("#task-uuid")).to_have_text(done.uuid)
            expect(page.locator("#task-status")).to_have_text("completed")
            output = page.locator("#task-output")
            expect(output).to_contain_text(expected_output[-1].strip())
            expect(output).to_contain_text(expected_output[0].strip())
            expect(page.locator("#task-options")).to_contain_text("orthophoto-resolution")
            expect(page.locator("#task-facts")).to_contain_text(f"{fast.host}:{fast.port}")
            timeline = page.locator("#task-timeline li")
            expect(timeline.last).to_contain_text("completed")
            assert timeline.count() >= 2  # at least: held by clusterodm, then on the node
            page.screenshot(path=str(tmp_path / "task.png"), full_page=True)
            assert (tmp_path / "task.png").stat().st_size > 10_000

            # Follow as it runs: a slow task's new lines appear without reloading the page.
            httpx.post(
                f"{cluster.admin_url}/r/node/add",
                json={"hostname": slow.host, "port": slow.port},
                auth=AUTH,
                timeout=5,
            ).raise_for_status()
            httpx.post(f"{cluster.admin_url}/r/node/lock", json={"number": 1}, auth=AUTH, timeout=5)
            cluster.wait_online(2)
            running = client.create_task(images[:2], name="Followed")
            page.evaluate("(uuid) => { location.hash = '#/task/' + uuid; }", running.uuid)
            expect(page.locator("#task-uuid")).to_have_text(running.uuid)
            expect(page.locator("#task-status")).to_have_text("running")
            before = len(page.locator("#task-output").text_content() or "")
            page.wait_for_function(  # new output lines while the task runs, without a reload
                f"() => document.getElementById('task-output').textContent.length > {before}"
            )
            expect(page.locator("#task-status")).to_have_text("completed", timeout=20_000)
            final = running.output()
            expect(page.locator("#task-output")).to_contain_text(final[-1].strip())
        finally:
            page.context.close()


def test_no_node_help(browser: Browser, tmp_path: Path) -> None:
    with ClusterODM(tmp_path, "--admin-pass", PASSWORD, env=FAST_HISTORY) as cluster:
        page = open_page(browser, cluster.admin_url)
        try:
            help_box = page.locator("#no-nodes")
            expect(help_box).to_be_visible()
            expect(help_box).to_contain_text(f"telnet localhost {cluster.admin_cli_port}")
            expect(help_box).to_contain_text("NODE ADD host port")
            expect(help_box).to_contain_text(str(cluster.data_dir / "nodes.json"))
            expect(page.locator("#chart-nodes")).to_contain_text("No node has been polled yet")
            page.screenshot(path=str(tmp_path / "no-nodes.png"), full_page=True)
        finally:
            page.context.close()
