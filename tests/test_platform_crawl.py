"""Real crawls over HTTP of the local platform shops (Smartstore in real Chromium), checked in the database."""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from crawler.demo.platform_shops import MAKESHOP_BLOCKED, PLATFORM_SHOPS, PlatformShops
from crawler.platforms import generic
from crawler.run import crawl_url
from pipeline.config import Settings, load_settings
from pipeline.db import Database, Page, PageImage, Skip
from pipeline.repo import upsert_run

FAST = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "CONCURRENT_REQUESTS_PER_DOMAIN": 8}
SEEN = date(2024, 6, 2)
#: Shops crawled without a browser, their platform detected from the start page.
PLAIN = tuple(p for p in PLATFORM_SHOPS if p != "smartstore")


@dataclass
class Crawled:
    shops: PlatformShops
    settings: Settings
    db: Database
    run_id: int
    first: dict[str, dict[str, Any]]
    second: dict[str, dict[str, Any]]
    first_requests: list
    second_requests: list


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawled]:
    settings = load_settings(tmp_path_factory.mktemp("home"))
    db = Database(settings.database_url)
    saved = os.environ.get(generic.CONFIG_ENV)
    with PlatformShops() as shops:
        rules = tmp_path_factory.mktemp("rules") / "generic_shops.yaml"
        rules.write_text(shops.generic_rules(), encoding="utf-8")
        os.environ[generic.CONFIG_ENV] = str(rules)
        try:
            with db.session() as s:
                run_id = upsert_run(s, "daily", datetime(2024, 6, 1, 21), datetime(2024, 6, 2, 21)).id
            urls = {p: shops.start_urls[p] for p in PLAIN}
            first = {p: crawl_url(settings, url, run_id=run_id, seen=SEEN, extra_scrapy_settings=FAST) for p, url in urls.items()}
            first_requests = shops.requests
            shops.clear_requests()
            second = {p: crawl_url(settings, url, run_id=run_id, seen=SEEN, extra_scrapy_settings=FAST) for p, url in urls.items()}
            yield Crawled(shops, settings, db, run_id, first, second, first_requests, shops.requests)
        finally:
            if saved is None:
                os.environ.pop(generic.CONFIG_ENV, None)
            else:
                os.environ[generic.CONFIG_ENV] = saved
    db.dispose()


def crawl_stats(settings: Settings) -> list[dict[str, Any]]:
    """Scrapy's full stats of each crawl made with these settings (``crawler.run`` keeps the last one per start URL)."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted((settings.home / "crawl-stats").glob("*.json"))]


def pages_of(db: Database, base_url: str) -> list[tuple[Page, list[PageImage]]]:
    with db.session() as s:
        pages = list(s.scalars(select(Page).where(Page.url.startswith(base_url)).order_by(Page.url)))
        return [(p, list(s.scalars(select(PageImage).where(PageImage.page_id == p.id).order_by(PageImage.role, PageImage.position))))
                for p in pages]


def check_shop(db: Database, shops: PlatformShops, platform: str) -> None:
    base = shops.base_urls[platform]
    expected = shops.expected(platform)
    found = pages_of(db, base)
    assert len(found) == len(expected["products"]), [p.url for p, _ in found]
    seller = expected["seller"]
    for page, links in found:
        assert page.platform == platform
        n = next(k for k in expected["products"] if page.title == f"{platform} 데모 상품 {k}")
        assert page.price == f"{10_000 + n * 1_000:,}원"
        assert page.seller["business_number"] == seller.business_number
        assert page.seller["company"] == seller.company and page.seller["email"] == seller.email
        details = [link.url for link in links if link.role == "detail"]
        products = [link.url for link in links if link.role == "product"]
        assert details == [base + path for path in expected["detail_images"][n]]
        assert products == [base + path for path in expected["product_images"][n]]


@pytest.mark.parametrize("platform", PLAIN)
def test_each_platform_shop_is_crawled(crawled: Crawled, platform: str) -> None:
    counts = crawled.first[platform]
    assert counts["finish_reason"] == "finished" and counts["errors"] == 0
    assert counts["pages"] == 2 and counts["images"] == 10 and counts["image_failures"] == 0
    check_shop(crawled.db, crawled.shops, platform)


def test_iframe_details_were_followed(crawled: Crawled) -> None:
    paths = {r.path for r in crawled.first_requests}
    assert {"/products/11/pc-desc?prdNo=11", "/Item/DetailView/Item.aspx?goodscode=11"} <= paths


def test_makeshop_block_page_is_a_skip(crawled: Crawled) -> None:
    with crawled.db.session() as s:
        reasons = dict(s.execute(select(Skip.subject, Skip.reason).where(Skip.subject.contains(f"branduid={MAKESHOP_BLOCKED}"))).all())
    assert len(reasons) == 1 and "blocked by MakeShop" in next(iter(reasons.values()))
    assert crawled.first["makeshop"]["page_failures"] == 1


def test_second_crawl_downloads_no_image(crawled: Crawled) -> None:
    for platform, counts in crawled.second.items():
        assert counts["image_bytes"] == 0 and counts["files_new"] == 0, platform
        assert counts["pages"] == 2, platform
    assert [r for r in crawled.second_requests if r.path.startswith("/img/")] == []
    first_bytes = sum(r.bytes_sent for r in crawled.first_requests)
    second_bytes = sum(r.bytes_sent for r in crawled.second_requests)
    assert second_bytes < 0.15 * first_bytes, (second_bytes, first_bytes)


def test_iframe_pages_answer_304_without_refetching_their_frame(crawled: Crawled) -> None:
    second = {r.path: r.status for r in crawled.second_requests}
    assert second["/products/11"] == 304 and "/products/11/pc-desc?prdNo=11" not in second


def test_plain_crawls_never_start_a_browser(crawled: Crawled) -> None:
    """Only a platform that renders with JavaScript installs scrapy-playwright's handlers: no Chromium for the others."""
    stats = crawl_stats(crawled.settings)
    assert len(stats) == len(PLAIN)
    assert [key for s in stats for key in s if key.startswith(("playwright/", "copywatch/browser_"))] == []


@pytest.mark.parametrize("platform", ["11st", "gmarket"])
def test_detail_frames_of_the_deepest_listings_products_are_followed(platform: str, tmp_path: Path) -> None:
    """max_depth=0: the start page's products are crawled with their detail iframes (Scrapy's DEPTH_LIMIT used to drop
    those frames, and with them the products, without a skip)."""
    settings = load_settings(tmp_path)
    with PlatformShops((platform,)) as shops:
        counts = crawl_url(settings, shops.start_urls[platform], seen=SEEN, max_depth=0, extra_scrapy_settings=FAST)
        frames = [r.path for r in shops.requests if "/pc-desc" in r.path or "/DetailView/" in r.path]
    assert counts["pages"] == 2 and counts["images"] == 10 and counts["failures"] == 0
    assert len(frames) == 2
    assert [s.get("depth/request_ignored_count") for s in crawl_stats(settings)] == [None]


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()), reason="needs Debian's Chromium")
def test_smartstore_in_chromium(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    with PlatformShops(("smartstore",)) as shops:
        counts = crawl_url(settings, shops.start_urls["smartstore"], seen=SEEN, platform="smartstore", extra_scrapy_settings=FAST)
        assert counts["finish_reason"] == "finished" and counts["errors"] == 0
        assert counts["pages"] == 2 and counts["images"] == 10
        db = Database(settings.database_url)
        try:
            check_shop(db, shops, "smartstore")
            with db.session() as s:
                sellers = list(s.scalars(select(Page.seller)))
        finally:
            db.dispose()
        assert {seller["channel_uid"] for seller in sellers} == {"demoChannelUid001"}
        api = [r.path for r in shops.requests if r.path.startswith("/i/v1/products/")]
        assert sorted(api) == ["/i/v1/products/11/contents", "/i/v1/products/12/contents"]
        # Chromium renders without downloading images; the files pipeline fetched each image once.
        assert sorted(r.path for r in shops.requests if r.path.startswith("/img/")) == sorted(
            p for n in (11, 12) for p in shops.expected("smartstore")["product_images"][n] + shops.expected("smartstore")["detail_images"][n])
        shops.clear_requests()
        again = crawl_url(settings, shops.start_urls["smartstore"], seen=SEEN, platform="smartstore", extra_scrapy_settings=FAST)
        assert again["pages"] == 2 and again["image_bytes"] == 0 and again["files_new"] == 0
        # Rendered pages are fetched again (no conditional requests through the browser); their images are
        # conditional requests answered 304, with no body.
        images = [r for r in shops.requests if r.path.startswith("/img/")]
        assert len(images) == 10 and {(r.status, r.bytes_sent) for r in images} == {(304, 0)}
        assert again["images_unchanged"] == 10


class FailingStore(ThreadingHTTPServer):
    """A Smartstore-like store on 127.0.0.1: products 1 and 2 answer, 3 and 4 are 404, 5 closes the connection unanswered."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FailingStoreHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.paths: list[str] = []


class FailingStoreHandler(BaseHTTPRequestHandler):
    server: FailingStore

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.paths.append(self.path)
        if self.path == "/failstore/products/5":
            self.close_connection = True  # no status line at all: the browser's navigation fails (ERR_EMPTY_RESPONSE)
            return
        status, body = 404, "<html><body>없는 상품</body></html>"
        if self.path == "/failstore":
            status, body = 200, "<html><body>" + "".join(f'<a href="/failstore/products/{n}">{n}</a>' for n in range(1, 6)) + "</body></html>"
        elif self.path in ("/failstore/products/1", "/failstore/products/2"):
            n = self.path[-1]
            state = {"product": {"A": {"name": f"상품 {n}", "salePrice": 1000, "productImages": [{"url": f"/img/{n}.png", "order": 1}],
                                       "channel": {"channelUid": "failChannel"}}}}
            status, body = 200, f"<html><head><script>window.__PRELOADED_STATE__={json.dumps(state)};</script></head><body></body></html>"
        elif self.path in ("/img/1.png", "/img/2.png"):
            self.answer(200, "image/png", png_bytes(int(self.path[-5])))
            return
        self.answer(status, "text/html; charset=utf-8", body.encode())

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        pass


def png_bytes(seed: int) -> bytes:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (32, 48), (40 * seed, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's Chromium")
def test_browser_pages_of_failed_requests_are_closed(tmp_path: Path) -> None:
    """Errbacks close the Playwright page of a failed request (HTTP errors and failed navigations): with at most 2 pages
    per context, three unclosed pages would stall the crawl for good (killed here after 120 s)."""
    settings = load_settings(tmp_path)
    server = FailingStore()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        counts = crawl_url(settings, server.url + "/failstore", seen=SEEN, platform="smartstore",
                           extra_scrapy_settings={**FAST, "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 2}, timeout_s=120)
    finally:
        server.shutdown()
        server.server_close()
    assert counts["finish_reason"] == "finished"
    assert counts["pages"] == 2 and counts["images"] == 2 and counts["page_failures"] == 3
    [stats] = crawl_stats(settings)
    # The store and its five products were rendered; robots.txt and the images were plain requests.
    assert stats["playwright/page_count"] == 6 == stats["copywatch/browser_pages_closed"]
    assert sorted(p for p in server.paths if p.startswith("/img/")) == ["/img/1.png", "/img/2.png"]
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            reasons = dict(s.execute(select(Skip.subject, Skip.reason).where(Skip.stage != "download")).all())
    finally:
        db.dispose()
    assert reasons[server.url + "/failstore/products/3"] == reasons[server.url + "/failstore/products/4"] == "HTTP 404 Not Found"
    assert "ERR_EMPTY_RESPONSE" in reasons[server.url + "/failstore/products/5"]


# ------------------------------------------------------------------ copywatch extract


def run_extract(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from pipeline.cli import main

    code = main(["extract", *args])
    return code, capsys.readouterr().out


def test_extract_prints_the_adapters_fields(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("COPYWATCH_HOME", str(tmp_path))
    with PlatformShops(("11st", "godomall", "makeshop")) as shops:
        code, out = run_extract(capsys, shops.base_urls["11st"] + "/products/12", "--json")
        assert code == 0
        data = json.loads(out)
        base = shops.base_urls["11st"]
        assert list(data) == ["platform", "title", "product_images", "detail_images", "seller"]
        assert data["platform"] == "11st" and data["title"] == "11st 데모 상품 12"
        assert data["detail_images"] == [f"{base}/img/11st/12/d-{i}.jpg" for i in range(3)]
        assert data["seller"]["business_number"] == "306-16-10006"
        code, out = run_extract(capsys, shops.base_urls["godomall"] + "/shop/goods/goods_view.php?goodsno=11")
        assert code == 0 and "platform: godomall" in out and "detail_images: 3" in out
        code, _ = run_extract(capsys, shops.base_urls["makeshop"] + f"/shop/shopdetail.html?branduid={MAKESHOP_BLOCKED}")
        assert code == 1


def test_extract_obeys_robots_and_refuses_coupang(capsys: pytest.CaptureFixture[str]) -> None:
    with PlatformShops(("godomall",)) as shops:
        code, out = run_extract(capsys, shops.base_urls["godomall"] + "/member/goods/goods_view.php?goodsNo=1")
        assert code == 1 and out == ""
        assert [r.path for r in shops.requests] == ["/robots.txt"]
    code, out = run_extract(capsys, "https://www.coupang.com/vp/products/1")
    assert code == 1 and out == ""


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's Chromium")
def test_extract_smartstore_uses_the_browser(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    with PlatformShops(("smartstore",)) as shops:
        base = shops.base_urls["smartstore"]
        code, out = run_extract(capsys, base + "/demostore/products/11", "--json", "--platform", "smartstore")
    assert code == 0
    data = json.loads(out)
    assert data["detail_images"] == [f"{base}/img/smartstore/11/d-{i}.jpg" for i in range(3)]
    assert data["seller"]["channel_uid"] == "demoChannelUid001"


# ------------------------------------------------------------------ evidence screenshots


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's Chromium")
def test_screenshots_are_stored_by_sha256(tmp_path: Path) -> None:
    import io

    from PIL import Image as PILImage

    from crawler.screenshot import capture
    from pipeline.db import Screenshot
    from pipeline.repo import upsert_page
    from pipeline.store import ContentStore

    settings = load_settings(tmp_path)
    db = Database(settings.database_url)
    try:
        with PlatformShops(("smartstore", "godomall")) as shops:
            with db.session() as s:
                ids = [upsert_page(s, shops.base_urls["smartstore"] + "/demostore/products/11", seen=SEEN, run_id=None, target_id=None,
                                   platform="smartstore", shop="demo").id,
                       upsert_page(s, shops.base_urls["godomall"] + "/goods/goods_view.php?goodsNo=404", seen=SEEN, run_id=None,
                                   target_id=None, platform="godomall", shop="demo").id]
            counts = capture(settings, ids)
            again = capture(settings, ids[:1])
        assert counts == {"pages": 2, "captured": 1, "new_files": 1, "failed": 1}
        assert again["captured"] == 1
        with db.session() as s:
            shots = list(s.scalars(select(Screenshot)))
            skips = list(s.scalars(select(Skip.reason).where(Skip.stage == "screenshot")))
        assert shots and {shot.page_id for shot in shots} == {ids[0]} and shots[0].captured_at is not None
        png = ContentStore(settings.store_dir).read(shots[0].sha256)
        image = PILImage.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (shots[0].width, shots[0].height) and image.height > 900
        assert skips and "404" in skips[0]
    finally:
        db.dispose()
