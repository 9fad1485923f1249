"""Real-browser tests (Playwright with Debian's Chromium): the rendered report and the analysts' Streamlit app."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.analysts import add_analyst
from pipeline.cli.review import app_command
from pipeline.db import Finding, ReviewDecision
from reports.render import render_client_report
from reviewdata import PASSWORD, build_world, png, stacked

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Screenshots go here when the variable is set (for a human to look at).
SHOTS = os.environ.get("COPYWATCH_TEST_SHOTS")
APP_START_S, UI_TIMEOUT_MS = 60, 60_000


@pytest.fixture()
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def world(cw_home):
    w = build_world(cw_home)
    yield w
    w.db.dispose()


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_report_images_all_load_in_chromium(world, browser) -> None:
    render_client_report(world.settings, world.run1, "acme")
    path = render_client_report(world.settings, world.run2, "acme")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
    assert len(sizes) == 10 and any("-screenshot.jpg" in src for src, _, _ in sizes), sizes
    assert all(complete and width > 0 for _, complete, width in sizes), sizes
    assert page.locator("#trend svg rect.bar").count() == 14
    assert page.evaluate("() => window.__xss === undefined && document.querySelectorAll('script').length === 0")
    _shot(page, "report.png")
    page.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + APP_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the app did not start in time")


@pytest.fixture()
def app_url(world) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(app_command(port), env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(proc, port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_status(world, finding_id: int, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with world.db.session() as s:
            if s.get(Finding, finding_id).status == status:
                return
        time.sleep(0.2)
    raise AssertionError(f"finding {finding_id} did not become {status}")


def test_app_sign_in_search_and_confirm(world, browser, app_url, tmp_path) -> None:
    with world.db.session() as s:
        add_analyst(s, "kim", PASSWORD, ["acme"])
    upload = tmp_path / "upload.png"
    upload.write_bytes(png(stacked(world.gallery_images[3:6])))
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("textbox", name="Analyst").fill("kim")
    page.locator('input[aria-label="Password"]').fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong analyst name or password").wait_for()
    page.locator('input[aria-label="Password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()
    assert page.get_by_text("Other Brand").count() == 0
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_text("10 results").wait_for()
    for rank in range(1, 11):
        page.get_by_text(f"#{rank}  score").first.wait_for()
    assert page.get_by_text("#11  score").count() == 0
    _shot(page, "app-search.png")
    page.get_by_text("Review queue").click()
    fid = world.findings["copy"]
    page.get_by_role("button", name=f"Confirm #{fid}").click()
    page.get_by_text(f"Finding {fid}: new → confirmed by kim").wait_for()
    _wait_status(world, fid, "confirmed")
    with world.db.session() as s:
        d = s.scalar(select(ReviewDecision).where(ReviewDecision.finding_id == fid))
        assert (d.decision, d.analyst) == ("confirmed", "kim")
    _shot(page, "app-queue.png")
    page.get_by_text("Finding detail").click()
    page.get_by_text("Audit trail").wait_for()
    audit = page.locator("table").last
    audit.get_by_text("kim").wait_for()
    assert "confirmed" in audit.inner_text()
    assert page.get_by_text("<b>복사몰</b>").count() >= 1, "crawled markup is shown as text"
    assert page.locator("b", has_text="복사몰").count() == 0
    _shot(page, "app-detail.png")
    page.close()
