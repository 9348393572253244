"""The pictures in a real browser: the Dagster UI renders a partition's chart, and the HTML
report opens from disk without an error. Headless Chromium (Debian's `chromium`, which `.ci/run`
installs) driven by Playwright; skipped with a reason where either is missing."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from marketpulse_pipeline.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install -y chromium"),
]
ROOT = Path(__file__).parents[1]


@pytest.fixture
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def webserver(env, tmp_path, monkeypatch):
    """A materialized home (the demo's last 150 sessions, runs recorded) and the UI on it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["demo", "--days", "150"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/server_info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the Dagster webserver did not answer within a minute")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_ui_renders_a_partitions_chart(webserver, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{webserver}/assets/alerts?view=partitions&partition=META")
    skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter dialog
    skip.click(timeout=30_000)
    page.locator("tr", has_text="chart").get_by_text("[Show Markdown]").click(timeout=30_000)
    image = page.locator('img[src^="data:image/png"]').first
    image.wait_for(timeout=30_000)
    width, height = image.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    assert (width, height) == (600, 390)  # the 10 x 6.5 in chart at 60 dpi, decoded
    # the CLI's run is listed under its job, where a user looks for it
    page.goto(f"{webserver}/locations/marketpulse/jobs/marketpulse_daily/runs")
    page.get_by_text("Success").first.wait_for(timeout=30_000)
    # and on the Overview timeline, as a row per job
    page.goto(f"{webserver}/overview/activity/timeline")
    page.get_by_role("link", name="marketpulse_daily").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="after_the_run").first.wait_for(timeout=30_000)


def test_the_report_opens_without_an_error(env, conn, tmp_path, browser, capsys):
    from marketpulse_pipeline_tests.test_notifications import LATEST, add_alert, add_prices

    add_prices(conn, "AAPL")
    add_alert(conn, "AAPL", LATEST, 0.0004)
    assert main(["report", "-o", str(tmp_path / "report")]) == 0
    page = browser.new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((tmp_path / "report" / "index.html").as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert widths and all(w == 800 for w in widths)
    assert errors == []
