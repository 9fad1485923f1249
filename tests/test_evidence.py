"""The evidence stage: the daily run screenshots the pages of a client's open findings (real Chromium, a real
local shop over HTTP, a real SQLite database), once per run, and the report shows the screenshot."""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from crawler.demo.platform_shops import PlatformShops
from pipeline.config import Settings, load_settings
from pipeline.db import Client, Database, Finding, FindingSighting, GalleryImage, Image, Page, Run, Screenshot, Skip
from pipeline.evidence import capture_evidence
from pipeline.repo import upsert_run

DAY = date(2024, 6, 2)
NOW = datetime(2024, 6, 2, 0, 0)
SHOT_PATH = "/goods/goods_view.php?goodsNo=11"
PLAIN_PATH = "/goods/goods_view.php?goodsNo=12"  # no finding: never shot
DISMISSED_PATH = "/shop/goods/goods_view.php?goodsno=12"  # only a dismissed finding: never shot
NOT_HTTP_URL = "ftp://files.example/goods/1"  # the other client's finding: not http(s), a skip


@dataclass
class World:
    settings: Settings
    db: Database
    run_id: int
    pages: dict[str, int]
    base: str


def build(settings: Settings, base: str) -> World:
    """Clients acme and other; one run; findings seen in it on three pages of acme's and one of other's."""
    db = Database(settings.database_url)
    with db.session() as s:
        run_id = upsert_run(s, "daily", datetime(2024, 6, 1, 21), datetime(2024, 6, 2, 21)).id
        acme = Client(slug="acme", name="Acme", language="en", created_at=NOW)
        other = Client(slug="other", name="Other", language="en", created_at=NOW)
        s.add_all([acme, other])
        s.flush()
        pages = {}
        for name, url in (("shot", base + SHOT_PATH), ("plain", base + PLAIN_PATH), ("dismissed", base + DISMISSED_PATH), ("ftp", NOT_HTTP_URL)):
            p = Page(url=url, platform="godomall", shop="godomall-demo", first_seen=DAY, last_seen=DAY, last_run_id=run_id, content_sha256="a" * 64)
            s.add(p)
            s.flush()
            pages[name] = p.id

        def finding(client: Client, page: str, n: int, status: str = "new") -> None:
            g = GalleryImage(client_id=client.id, sha256=f"{n:064x}", label=f"g{n}.jpg", width=10, height=10, added_at=NOW)
            img = Image(sha256=f"{n + 100:064x}", size_bytes=1, status="ok", first_seen=DAY)
            s.add_all([g, img])
            s.flush()
            f = Finding(client_id=client.id, image_id=img.id, gallery_image_id=g.id, page_id=pages[page], score=0.9,
                        suspect_box=[0, 0, 10, 10], gallery_box=[0, 0, 10, 10], overlap=1.0, status=status,
                        first_seen=DAY, last_seen=DAY, first_run_id=run_id, last_run_id=run_id)
            s.add(f)
            s.flush()
            s.add(FindingSighting(finding_id=f.id, page_id=pages[page], run_id=run_id))

        finding(acme, "shot", 1)
        finding(acme, "shot", 2)  # two findings on one page: one shot
        finding(acme, "dismissed", 3, status="dismissed")
        finding(other, "ftp", 4)
    return World(settings, db, run_id, pages, base)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[World, PlatformShops]]:
    with PlatformShops(("godomall",)) as shops:
        w = build(load_settings(tmp_path / "home"), shops.base_urls["godomall"])
        try:
            yield w, shops
        finally:
            w.db.dispose()


def page_requests(shops: PlatformShops) -> list[str]:
    return [r.path for r in shops.requests if "goods_view.php" in r.path]


def shots(w: World) -> list[Screenshot]:
    with w.db.session() as s:
        return list(s.scalars(select(Screenshot).order_by(Screenshot.id)))


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's Chromium")
def test_evidence_shoots_each_finding_page_once_per_run(world) -> None:
    from pipeline.store import ContentStore
    from PIL import Image as PILImage
    from reports.render import render_client_report

    w, shops = world
    first = capture_evidence(w.settings, w.run_id, "acme")
    assert first == {"enabled": True, "pages": 1, "already_shot": 0, "not_http": 0, "requested": 1, "captured": 1, "new_files": 1, "failed": 0}
    # Only the page with open findings was opened in the browser: not the page without findings, not the dismissed one.
    assert page_requests(shops) == [SHOT_PATH]
    (shot,) = shots(w)
    assert shot.page_id == w.pages["shot"] and shot.url == w.base + SHOT_PATH and shot.page_sha256 == "a" * 64
    png = ContentStore(w.settings.store_dir).read(shot.sha256)
    image = PILImage.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (shot.width, shot.height)
    with w.db.session() as s:
        run = s.get(Run, w.run_id)
        assert shot.captured_at >= run.started_at
        assert run.stats["evidence:acme"] == first

    # A retried task (or the report's re-render) does not shoot again: no browser request, no new row.
    shops.clear_requests()
    again = capture_evidence(w.settings, w.run_id, "acme")
    assert again == {**first, "already_shot": 1, "requested": 0, "captured": 0, "new_files": 0}
    assert page_requests(shops) == [] and [(x.id, x.captured_at) for x in shots(w)] == [(shot.id, shot.captured_at)]

    # The report of the run shows the screenshot of the finding's page.
    html = render_client_report(w.settings, w.run_id, "acme").read_text(encoding="utf-8")
    assert f'src="thumbs/p{w.pages["shot"]}-screenshot.jpg"' in html and shot.sha256 in html

    # The page changed since (a re-crawl in the same run): it is shot again, and the row says of which content.
    with w.db.session() as s:
        s.get(Page, w.pages["shot"]).content_sha256 = "b" * 64
    changed = capture_evidence(w.settings, w.run_id, "acme")
    assert changed["captured"] == 1 and changed["already_shot"] == 0 and page_requests(shops) == [SHOT_PATH]
    newest = max(shots(w), key=lambda x: (x.captured_at, x.id))
    assert newest.page_sha256 == "b" * 64 and newest.captured_at > shot.captured_at


def test_non_http_pages_become_skips_of_their_client_only(world) -> None:
    from reports.render import render_client_report

    w, shops = world

    def no_browser(*args, **kwargs):
        raise AssertionError("nothing to shoot: the browser must not start")

    counts = capture_evidence(w.settings, w.run_id, "other", capture=no_browser)
    assert counts == {"enabled": True, "pages": 1, "already_shot": 0, "not_http": 1, "requested": 0, "captured": 0, "new_files": 0, "failed": 0}
    assert capture_evidence(w.settings, w.run_id, "other", capture=no_browser) == counts  # idempotent
    with w.db.session() as s:
        skips = list(s.execute(select(Skip.run_id, Skip.stage, Skip.subject)).tuples())
    assert skips == [(w.run_id, "screenshot", NOT_HTTP_URL)] and shots(w) == []
    # The other client's page is not named in acme's report; it is in other's.
    assert NOT_HTTP_URL not in render_client_report(w.settings, w.run_id, "acme").read_text(encoding="utf-8")
    assert NOT_HTTP_URL in render_client_report(w.settings, w.run_id, "other").read_text(encoding="utf-8")


def test_a_browser_that_cannot_start_is_recorded_and_the_run_goes_on(world) -> None:
    w, shops = world

    def broken(settings, page_ids, run_id=None):
        raise RuntimeError("chromium: cannot open display")

    counts = capture_evidence(w.settings, w.run_id, "acme", capture=broken)
    assert counts["requested"] == counts["failed"] == 1 and counts["captured"] == 0
    with w.db.session() as s:
        (skip,) = s.scalars(select(Skip))
    assert (skip.run_id, skip.stage, skip.subject) == (w.run_id, "screenshot", w.base + SHOT_PATH)
    assert "cannot open display" in skip.reason and page_requests(shops) == []


def test_screenshots_can_be_switched_off(world, monkeypatch) -> None:
    w, shops = world
    monkeypatch.setenv("COPYWATCH_SCREENSHOTS", "0")
    off = load_settings(w.settings.home)
    assert off.screenshots is False
    monkeypatch.setenv("COPYWATCH_SCREENSHOTS", "on")
    assert load_settings(w.settings.home).screenshots is True
    monkeypatch.delenv("COPYWATCH_SCREENSHOTS")
    assert load_settings(w.settings.home).screenshots is True

    def no_browser(*args, **kwargs):
        raise AssertionError("switched off: the browser must not start")

    counts = capture_evidence(off, w.run_id, "acme", capture=no_browser)
    assert counts["enabled"] is False and counts["requested"] == counts["captured"] == 0
    assert shots(w) == [] and page_requests(shops) == []
