"""Tests of the client HTML report: content, escaping, languages, thumbnails, idempotence, isolation."""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import func, select

from pipeline.config import Settings
from pipeline.db import Client, Database, Finding, GalleryImage, Image, Page, Report, Run, Skip
from pipeline.store import ContentStore
from reports.i18n import STRINGS
from reports.render import clamp_box, crop_window, render_client_report, safe_href

HOSTILE_TITLE = '<script>alert(1)</script> & "quotes"'
HOSTILE_SELLER = '"><img src=x onerror=alert(2)>'
COPY_URL = "https://copy.example/product/detail.html?product_no=7&cate_no=1"
JS_URL = "javascript:alert(3)"
DISMISSED_URL = "https://dismissed.example/product/detail.html?product_no=1"
LOW_URL = "https://low-score.example/product/detail.html?product_no=2"
STALE_URL = "https://stale.example/product/detail.html?product_no=3"
OTHER_URL = "https://other-tenant.example/product/detail.html?product_no=4"
#: interval_end 2024-05-02 21:00 UTC is 06:00 on 2024-05-03 in Seoul: the run's date.
RUN_DAY = "2024-05-03"


def _pattern(w: int, h: int, seed: int) -> PILImage.Image:
    """A red-free picture: blue/green gradient with grey shapes, distinct per seed."""
    im = PILImage.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (0, (x * 3 + seed * 40) % 200, (y * 2 + seed * 25) % 220)
    draw = ImageDraw.Draw(im)
    for i in range(6):
        x, y = (seed * 37 + i * 53) % max(1, w - 40), (seed * 71 + i * 97) % max(1, h - 40)
        draw.ellipse((x, y, x + 36, y + 36), fill=(90, 90 + i * 20, 120))
    return im


def _png(im: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _detail_page(copied: PILImage.Image, height: int) -> PILImage.Image:
    """A long detail image with ``copied`` pasted in the middle (no red anywhere)."""
    page = PILImage.new("RGB", (copied.width, height), (235, 240, 245))
    page.paste(copied, (0, height // 2))
    return page


@dataclass
class World:
    settings: Settings
    db: Database
    run_id: int
    acme_findings: dict[str, int]
    other_finding: int


def _put(store: ContentStore, im: PILImage.Image) -> str:
    sha, _ = store.put(_png(im))
    return sha


@pytest.fixture()
def world(tmp_path: Path) -> World:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'cw.db'}", threshold=0.5)
    db = Database(settings.database_url)
    store = ContentStore(settings.store_dir)
    protected = _pattern(240, 320, seed=1)
    other_protected = _pattern(200, 200, seed=2)
    sha_protected, sha_other = _put(store, protected), _put(store, other_protected)
    sha_detail = _put(store, _detail_page(protected, 4000))
    sha_photo = _put(store, protected.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT))
    sha_misc = [_put(store, _pattern(120, 160, seed=10 + i)) for i in range(3)]
    now = datetime(2024, 5, 3, 0, 0)
    day, yesterday = date(2024, 5, 3), date(2024, 5, 2)
    with db.session() as s:
        acme = Client(slug="acme", name="에이크미 <주식회사>", language="ko", threshold=None, created_at=now)
        other = Client(slug="other", name="Other Brand", language="ko", threshold=None, created_at=now)
        s.add_all([acme, other])
        s.flush()
        g_acme = GalleryImage(client_id=acme.id, sha256=sha_protected, label="hero-shot.png", width=240, height=320, added_at=now)
        g_other = GalleryImage(client_id=other.id, sha256=sha_other, label="other.png", width=200, height=200, added_at=now)
        s.add_all([g_acme, g_other])
        previous = Run(kind="daily", interval_start=datetime(2024, 5, 1, 21), interval_end=datetime(2024, 5, 1, 21), status="success", started_at=now, stats={})
        run = Run(
            kind="daily", interval_start=datetime(2024, 5, 2, 21), interval_end=datetime(2024, 5, 2, 21), status="success",
            started_at=now, stats={"crawl": {"pages": 24, "images": 57}},
        )
        s.add_all([previous, run])
        s.flush()

        def page(url: str, shop: str, title: str | None = None, seller: dict | None = None, price: str | None = None) -> Page:
            p = Page(url=url, platform="cafe24", shop=shop, title=title, price=price, seller=seller or {}, first_seen=yesterday, last_seen=day, last_run_id=run.id)
            s.add(p)
            s.flush()
            return p

        def image(sha: str, w: int, h: int) -> Image:
            im = Image(sha256=sha, size_bytes=1, width=w, height=h, status="ok", first_seen=yesterday)
            s.add(im)
            s.flush()
            return im

        detail, photo = image(sha_detail, 240, 4000), image(sha_photo, 240, 320)
        misc = [image(sha, 120, 160) for sha in sha_misc]
        seller = {"company": "도둑상회", "representative": HOSTILE_SELLER, "business_number": "123-45-67890", "email": "thief@copy.example"}
        p_copy = page(COPY_URL, "copyshop", HOSTILE_TITLE, seller, price="19,900원")
        p_js = page(JS_URL, "evil<shop>")
        p_dismissed, p_low = page(DISMISSED_URL, "dismissedshop"), page(LOW_URL, "lowshop")
        p_stale, p_other = page(STALE_URL, "staleshop"), page(OTHER_URL, "othershop")

        def finding(client: Client, img: Image, g: GalleryImage, p: Page, score: float, **kw) -> Finding:
            values = dict(
                client_id=client.id, image_id=img.id, gallery_image_id=g.id, page_id=p.id, score=score,
                suspect_box=[0, 2000, 240, 2320], gallery_box=[0, 0, 240, 320], overlap=0.83, mirrored=False,
                evidence={"inliers": 41}, status="new", first_seen=day, last_seen=day, first_run_id=run.id, last_run_id=run.id,
            )
            values.update(kw)
            f = Finding(**values)
            s.add(f)
            s.flush()
            return f

        f_copy = finding(acme, detail, g_acme, p_copy, 0.912)
        f_js = finding(
            acme, photo, g_acme, p_js, 0.734, suspect_box=[20, 30, 200, 290], gallery_box=[40, 30, 220, 290], mirrored=True,
            first_seen=yesterday, first_run_id=previous.id,
        )
        f_dismissed = finding(acme, misc[0], g_acme, p_dismissed, 0.95, status="dismissed")
        f_low = finding(acme, misc[1], g_acme, p_low, 0.31)
        f_stale = finding(acme, misc[2], g_acme, p_stale, 0.88, last_run_id=previous.id, last_seen=yesterday, first_run_id=previous.id)
        f_other = finding(other, detail, g_other, p_other, 0.99, suspect_box=[0, 0, 200, 200], gallery_box=[0, 0, 200, 200])
        s.add(Skip(run_id=run.id, stage="download", subject="https://broken.example/img.jpg", reason="HTTP 404 <b>not found</b>", created_at=now))
        s.add(Skip(run_id=previous.id, stage="download", subject="https://old-skip.example/x.jpg", reason="old", created_at=now))
        ids = {"copy": f_copy.id, "js": f_js.id, "dismissed": f_dismissed.id, "low": f_low.id, "stale": f_stale.id}
        world = World(settings=settings, db=db, run_id=run.id, acme_findings=ids, other_finding=f_other.id)
    yield world
    db.dispose()


def _red_pixels(path: Path) -> int:
    im = PILImage.open(path).convert("RGB")
    return sum(1 for r, g, b in im.getdata() if r > 180 and g < 90 and b < 90)


def test_report_file_and_content(world: World) -> None:
    path = render_client_report(world.settings, world.run_id, "acme")
    assert path == world.settings.reports_dir / "acme" / RUN_DAY / "report.html"
    html = path.read_text(encoding="utf-8")
    assert COPY_URL.replace("&", "&amp;") in html
    assert f'href="{COPY_URL.replace("&", "&amp;")}"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in html
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "HTTP 404 &lt;b&gt;not found&lt;/b&gt;" in html
    assert "에이크미 &lt;주식회사&gt;" in html
    for text in ("19,900원", "도둑상회", "123-45-67890", "0.91", "0.73", "83%", RUN_DAY, "2024-05-02"):
        assert text in html


def test_only_http_urls_become_links(world: World) -> None:
    html = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    assert JS_URL in html
    assert 'href="javascript' not in html.lower()
    assert safe_href(JS_URL) is None and safe_href("ftp://x.example/a") is None and safe_href("https:///nohost") is None
    assert safe_href(COPY_URL) == COPY_URL


def test_findings_selected_sorted_and_grouped(world: World) -> None:
    html = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    ids = world.acme_findings
    assert f'id="finding-{ids["copy"]}"' in html and f'id="finding-{ids["js"]}"' in html
    for hidden in ("dismissed", "low", "stale"):
        assert f'id="finding-{ids[hidden]}"' not in html
    for url in (DISMISSED_URL, LOW_URL, STALE_URL):
        assert url not in html
    assert html.index(f'id="finding-{ids["copy"]}"') < html.index(f'id="finding-{ids["js"]}"')
    assert "evil&lt;shop&gt;" in html
    assert "https://old-skip.example" not in html
    with world.db.session() as s:
        report = s.scalar(select(Report))
        assert report.n_findings == 2


def test_korean_by_default_english_when_set(world: World) -> None:
    ko = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    assert '<html lang="ko">' in ko
    for key in ("title", "summary", "protected_image", "suspect_image", "seller_company", "seller_business_number", "skipped", "first_seen"):
        assert STRINGS["ko"][key] in ko
    assert STRINGS["en"]["page_url"] not in ko
    with world.db.session() as s:
        s.scalar(select(Client).where(Client.slug == "acme")).language = "en"
    en = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    assert '<html lang="en">' in en
    for key in ("title", "summary", "page_url", "protected_image", "seller_company", "skipped", "first_seen"):
        assert STRINGS["en"][key] in en
    assert STRINGS["ko"]["protected_image"] not in en


def test_language_argument_overrides_client(world: World) -> None:
    html = render_client_report(world.settings, world.run_id, "acme", language="en").read_text(encoding="utf-8")
    assert STRINGS["en"]["title"] in html


def test_summary_counts(world: World) -> None:
    html = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    summary = html[html.index('id="summary"'):html.index('id="findings"')]
    assert '<span class="n">2</span><span class="l">' + STRINGS["ko"]["findings_total"] in summary
    assert '<span class="n">1</span><span class="l">' + STRINGS["ko"]["findings_new"] in summary
    assert '<span class="n">1</span><span class="l">' + STRINGS["ko"]["findings_ongoing"] in summary
    assert '<span class="n">24</span>' in summary and '<span class="n">57</span>' in summary
    assert "copyshop" in summary and "evil&lt;shop&gt;" in summary


def test_strings_complete_in_every_language() -> None:
    assert set(STRINGS["ko"]) == set(STRINGS["en"])


def test_thumbnails_are_outlined_jpegs(world: World) -> None:
    path = render_client_report(world.settings, world.run_id, "acme")
    thumbs = path.parent / "thumbs"
    names = sorted(p.name for p in thumbs.iterdir())
    ids = world.acme_findings
    expected = sorted(f"f{ids[k]}-{side}.jpg" for k in ("copy", "js") for side in ("protected", "suspect"))
    assert names == expected
    html = path.read_text(encoding="utf-8")
    for name in names:
        assert f'src="thumbs/{name}"' in html
        with PILImage.open(thumbs / name) as im:
            assert im.format == "JPEG"
            im.verify()
        with PILImage.open(thumbs / name) as im:
            assert im.width <= 480 and im.height <= 720
        assert _red_pixels(thumbs / name) > 100, name
    with PILImage.open(thumbs / f"f{ids['copy']}-suspect.jpg") as long_thumb:
        assert long_thumb.height < 4000 / 2, "a long detail image is cropped around the match"


def test_rerender_replaces_files_without_duplicate_rows(world: World) -> None:
    first = render_client_report(world.settings, world.run_id, "acme")
    with world.db.session() as s:
        s.get(Finding, world.acme_findings["js"]).status = "dismissed"
    second = render_client_report(world.settings, world.run_id, "acme")
    assert first == second
    with world.db.session() as s:
        rows = s.scalars(select(Report).where(Report.run_id == world.run_id)).all()
        assert len(rows) == 1 and rows[0].n_findings == 1 and rows[0].path == str(second)
    assert sorted(p.name for p in second.parent.iterdir()) == ["report.csv", "report.html", "report.xlsx", "thumbs"]
    assert [p.name for p in (second.parent / "thumbs").iterdir()] != []
    assert not any(f"f{world.acme_findings['js']}-" in p.name for p in (second.parent / "thumbs").iterdir())


def test_cross_tenant_isolation(world: World) -> None:
    acme = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    other_path = render_client_report(world.settings, world.run_id, "other")
    other = other_path.read_text(encoding="utf-8")
    assert OTHER_URL not in acme and f'id="finding-{world.other_finding}"' not in acme
    assert "Other Brand" not in acme and "other.png" not in acme
    assert OTHER_URL in other and f'id="finding-{world.other_finding}"' in other
    assert COPY_URL.replace("&", "&amp;") not in other and "hero-shot.png" not in other
    assert other_path.parent == world.settings.reports_dir / "other" / RUN_DAY
    with world.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 2


def test_missing_store_file_is_noted_not_fatal(world: World) -> None:
    with world.db.session() as s:
        sha = s.scalar(select(GalleryImage.sha256).where(GalleryImage.label == "hero-shot.png"))
    ContentStore(world.settings.store_dir).path(sha).unlink()
    html = render_client_report(world.settings, world.run_id, "acme").read_text(encoding="utf-8")
    assert STRINGS["ko"]["image_unavailable"] in html
    assert f'src="thumbs/f{world.acme_findings["copy"]}-suspect.jpg"' in html


def test_unknown_client_and_run_raise(world: World) -> None:
    with pytest.raises(LookupError):
        render_client_report(world.settings, world.run_id, "nobody")
    with pytest.raises(LookupError):
        render_client_report(world.settings, 9999, "acme")


def test_box_helpers() -> None:
    assert clamp_box([-5, -5, 50, 50], (40, 40)) == (0, 0, 40, 40)
    assert clamp_box([10, 10, 10, 30], (40, 40)) is None
    assert clamp_box([], (40, 40)) is None
    assert crop_window((480, 700), None) == (0, 0, 480, 700)
    top = crop_window((960, 20000), (0, 10000, 960, 10400))
    assert top[1] <= 10000 and top[3] >= 10400 and top[3] - top[1] == 1440
    tall = crop_window((480, 20000), (0, 1000, 480, 9000))
    assert tall[1] < 1000 and tall[3] > 9000
