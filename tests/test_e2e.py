"""End to end: the demo mall over real HTTP, the copywatch_daily DAG through Airflow's dag.test()."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
SEOUL = ZoneInfo("Asia/Seoul")
pytestmark = pytest.mark.e2e


def _product_no(url: str) -> int | None:
    q = parse_qs(urlsplit(url).query)
    return int(q["product_no"][0]) if "product_no" in q else None


def _findings(settings):
    from pipeline.db import Database, Finding, GalleryImage, Image, Page

    db = Database(settings.database_url)
    try:
        with db.session() as s:
            rows = s.execute(
                select(Finding, GalleryImage.label, Image.sha256, Page.url, Page.shop)
                .join(GalleryImage, GalleryImage.id == Finding.gallery_image_id)
                .join(Image, Image.id == Finding.image_id)
                .join(Page, Page.id == Finding.page_id)
            ).all()
            return [(f.id, label, sha, url, f.first_seen, f.last_seen, f.score, list(f.gallery_box)) for f, label, sha, url, _ in rows]
    finally:
        db.dispose()


def _screenshots(settings, urls: set[str]) -> dict[str, tuple[int, str, datetime]]:
    """The newest screenshot of each of these pages: page URL -> (page id, PNG SHA-256, capture time)."""
    from pipeline.db import Database, Page, Screenshot

    db = Database(settings.database_url)
    try:
        with db.session() as s:
            rows = s.execute(
                select(Page.url, Page.id, Screenshot.sha256, Screenshot.captured_at)
                .join(Screenshot, Screenshot.page_id == Page.id)
                .where(Page.url.in_(urls))
                .order_by(Screenshot.captured_at, Screenshot.id)
            ).all()
            return {url: (page_id, sha, at) for url, page_id, sha, at in rows}
    finally:
        db.dispose()


def _run(settings, day: str):
    from datetime import date

    from pipeline.db import Database, Run
    from pipeline.stages import runs_between

    (run_id,) = runs_between(settings, date.fromisoformat(day), date.fromisoformat(day))
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            return s.get(Run, run_id)
    finally:
        db.dispose()


def test_daily_dag_finds_every_planted_copy_and_nothing_else(cw_home, airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from crawler.demo.build import build_demo
    from crawler.demo.seed import seed_demo
    from crawler.demo.server import DemoMall
    from pipeline.db import Database, Report, Skip
    from pipeline.store import sha256_file

    settings = cw_home
    # The demo mall is local: no need for the polite production delays in a test.
    monkeypatch.setenv("COPYWATCH_SCRAPY_SETTINGS", '{"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": false}')
    demo_dir = tmp_path / "demo"
    manifest = build_demo(demo_dir)
    planted = {(p["shop"], p["product_no"], sha256_file(demo_dir / p["image"])): Path(p["gallery"]).name for p in manifest["planted"]}
    assert len(planted) >= 6

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["copywatch_daily"]
    with DemoMall(demo_dir) as mall:
        seed_demo(settings, manifest, demo_dir, mall.base_urls)
        shop_of_port = {urlsplit(u).port: slug for slug, u in mall.base_urls.items()}
        dag.test(logical_date=datetime(2026, 11, 26, 6, 0, tzinfo=SEOUL))
        first = _findings(settings)

        # Every planted copy is a finding for the right protected image ...
        found: dict[tuple, set[str]] = {}
        for _, label, sha, url, *_ in first:
            found.setdefault((shop_of_port[urlsplit(url).port], _product_no(url), sha), set()).add(label)
        for key, gallery_label in planted.items():
            assert key in found, f"planted copy {key} was not found"
            assert gallery_label in found[key], f"{key} matched {found[key]}, not {gallery_label}"
        for p in manifest["planted"]:
            if p["kind"] == "mirrored_watermarked":  # the gallery also holds another colour of this shot
                key = (p["shop"], p["product_no"], sha256_file(demo_dir / p["image"]))
                assert found[key] == {Path(p["gallery"]).name}
        # ... and no unrelated product is one (colour variants of protected shots included).
        assert set(found) == set(planted), f"unexpected findings: {set(found) - set(planted)}"
        for _, _, _, _, _, _, score, gbox in first:
            assert score >= settings.threshold and len(gbox) == 4

        # The report exists and names the page of each planted copy.
        db = Database(settings.database_url)
        with db.session() as s:
            reports = s.scalars(select(Report)).all()
            assert len(reports) == 1
            html = Path(reports[0].path).read_text(encoding="utf-8")
            skips = s.scalars(select(Skip)).all()
        for *_, url, _, _, _, _ in first:
            assert url.replace("&", "&amp;") in html
        assert "<script>alert(1)" not in html
        # Every finding's page was screenshot by the run (evidence stage), before the report that shows it.
        finding_urls = {url for *_, url, _, _, _, _ in first}
        shots = _screenshots(settings, finding_urls)
        assert set(shots) == finding_urls, f"pages without a screenshot: {finding_urls - set(shots)}"
        for page_id, sha, captured_at in shots.values():
            assert f'src="thumbs/p{page_id}-screenshot.jpg"' in html and sha in html
            assert captured_at >= _run(settings, "2026-11-26").started_at
        assert any("404" in k.reason for k in skips) and any("not a decodable image" in k.reason for k in skips)

        # A second run (the next day) adds no duplicate finding; it updates last_seen.
        dag.test(logical_date=datetime(2026, 11, 27, 6, 0, tzinfo=SEOUL))
        second = _findings(settings)
        assert sorted(f[0] for f in second) == sorted(f[0] for f in first)
        assert all(f[5].isoformat() == "2026-11-27" and f[4].isoformat() == "2026-11-26" for f in second)
        # The next day's run screenshots the pages again (evidence of that day), once each.
        run2 = _run(settings, "2026-11-27")
        assert all(at >= run2.started_at for _, _, at in _screenshots(settings, finding_urls).values())
        evidence = run2.stats["evidence:hanbit"]
        assert evidence["captured"] == evidence["requested"] >= len(finding_urls) and evidence["failed"] == 0
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Report)) == 2
        db.dispose()
