"""Prometheus beside :mod:`deploy.screenshot`'s stack, and its two pictures for the README:
``docs/img/prometheus-alerts.png`` (the alerts page) and ``docs/img/prometheus-graph.png`` (the
payments graphed over the last minutes).

Prometheus is started the way ``make observe`` starts it (:mod:`deploy.observe`'s configuration
and command line) on the stack's ``prometheus-targets.json``, with a short scrape and evaluation
interval so the alerts turn within seconds, its data in the stack's temporary directory. Debian's
build has only the classic UI (``/graph``, ``/classic/alerts``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from playwright.async_api import Page, async_playwright

from deploy import observe
from deploy.stack import ROOT, free_port
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.shared.helpers import eventually

ALERTS_OUT = ROOT / "docs" / "img" / "prometheus-alerts.png"
GRAPH_OUT = ROOT / "docs" / "img" / "prometheus-graph.png"
INTERVAL = "2s"
GRAPH_RANGE = "2m"
# What the graph page shows, one panel each: payments settled per second by outcome, approval's
# latency (authentication to settlement), and the payment left UNKNOWN.
GRAPH_QUERIES = (
    "sum by (state) (rate(approval_attempt_outcomes_total[30s]))",
    "histogram_quantile(0.99, sum by (le) (rate(approval_settlement_seconds_bucket[30s])))",
    "max(approval_attempts_unknown)",
)
# The alerts the screenshot's situations set off at once (no `for:`): the shot waits for them.
EXPECTED_FIRING = frozenset({"DeadLetter", "RefundsFailing"})


def graph_path(queries: tuple[str, ...] = GRAPH_QUERIES, range_input: str = GRAPH_RANGE) -> str:
    """The classic graph page with one graph panel (``tab=0``) per query over ``range_input``."""
    params: dict[str, str] = {}
    for n, query in enumerate(queries):
        params |= {f"g{n}.expr": query, f"g{n}.tab": "0", f"g{n}.range_input": range_input}
    return "/graph?" + urlencode(params)


def firing(alerts: list[dict[str, Any]]) -> set[str]:
    """The names of the firing alerts in ``/api/v1/alerts``' list."""
    return {str(alert["labels"]["alertname"]) for alert in alerts if alert.get("state") == "firing"}


def all_up(targets: list[dict[str, Any]], expected: int) -> bool:
    """``expected`` active targets (``/api/v1/targets``), every one scraped successfully."""
    return len(targets) == expected and all(t.get("health") == "up" for t in targets)


@contextlib.contextmanager
def running_prometheus(run_dir: Path) -> Iterator[str]:
    """Prometheus on the run directory's targets and the alert rules; yields its URL and stops
    it (only the process it started) whatever happens."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: make system-deps (Debian's package)")
    config = observe.write_config(run_dir, scrape_interval=INTERVAL)
    port = free_port()
    with (run_dir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            observe.command(binary, config, run_dir, port), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_for_targets(url: str, expected: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:

        async def up() -> bool:
            with contextlib.suppress(httpx.TransportError):
                answer = await client.get("/api/v1/targets", params={"state": "active"})
                if answer.status_code == 200:
                    return all_up(answer.json()["data"]["activeTargets"], expected)
            return False

        await eventually(up, within=60)


async def wait_for_alerts(url: str, names: frozenset[str] = EXPECTED_FIRING) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:

        async def fire() -> bool:
            answer = await client.get("/api/v1/alerts")
            return names <= firing(answer.json()["data"]["alerts"])

        await eventually(fire, within=60)


async def photograph(url: str, alerts_out: Path = ALERTS_OUT, graph_out: Path = GRAPH_OUT) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await shoot_alerts(page, url, alerts_out)
            await shoot_graph(page, url, graph_out)
        finally:
            await browser.close()


async def shoot_alerts(page: Page, url: str, out: Path) -> None:
    """The alerts page with the pending and firing rules opened and their annotations shown."""
    await page.goto(f"{url}/classic/alerts")
    for header in await page.query_selector_all("tr.alert_header.alert-danger"):
        await header.click()
    for header in await page.query_selector_all("tr.alert_header.alert-warning"):
        await header.click()
    await page.click("button.show-annotations")
    out.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out), full_page=True)


async def shoot_graph(page: Page, url: str, out: Path) -> None:
    await page.goto(url + graph_path())
    # Rickshaw draws each panel's chart as an SVG in its div.graph once its query has answered.
    await page.wait_for_function(
        "n => document.querySelectorAll('div.graph svg').length >= n",
        arg=len(GRAPH_QUERIES),
        timeout=30_000,
    )
    # The navigation bar is fixed: a full-page shot stitched from scrolls repeats it mid-page, so
    # the window is made as tall as the page instead.
    await page.evaluate("document.activeElement.blur()")  # the page focuses its last query
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": 1440, "height": int(height)})
    out.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out))
