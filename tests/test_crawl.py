"""Real crawls over HTTP on 127.0.0.1 (the demo mall and a tiny robots.txt shop), checked in the database."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from crawler.demo.build import served_path
from crawler.demo.server import DemoMall
from crawler.run import crawl_target, crawl_url
from pipeline.config import Settings, load_settings
from pipeline.db import CrawlTarget, Database, Image, Page, PageImage, Skip
from pipeline.repo import upsert_run, upsert_target
from pipeline.store import ContentStore

#: Test crawls are polite enough for a local server and fast.
FAST = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "CONCURRENT_REQUESTS_PER_DOMAIN": 8}
SEEN = date(2024, 6, 2)
COUNT_KEYS = {
    "pages", "pages_unchanged", "images_unchanged", "images_relinked", "not_modified", "images", "images_bad", "files_new", "image_bytes", "image_failures", "page_failures", "failures",
    "bytes_downloaded", "requests", "responses", "robots_forbidden", "errors", "finish_reason", "elapsed_s", "wall_s",
}


@dataclass
class DemoCrawl:
    mall: DemoMall
    settings: Settings
    db: Database
    run_id: int
    targets: dict[str, int]
    first: dict[str, dict[str, Any]]
    second: dict[str, dict[str, Any]]
    rows_after_first: dict[str, list[tuple]]
    #: Requests the mall answered during the first crawl (the log's first entries) and the second.
    first_requests: list
    second_requests: list


def snapshot(db: Database) -> dict[str, list[tuple]]:
    with db.session() as s:
        return {
            "pages": sorted(s.execute(select(Page.id, Page.url, Page.title, Page.first_seen, Page.last_seen)).all()),
            "images": sorted(s.execute(select(Image.id, Image.sha256, Image.status, Image.width, Image.height)).all()),
            "links": sorted(s.execute(select(PageImage.id, PageImage.page_id, PageImage.image_id, PageImage.role, PageImage.position)).all()),
            "skips": sorted(s.execute(select(Skip.id, Skip.stage, Skip.subject, Skip.reason)).all()),
        }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoCrawl]:
    settings = load_settings(tmp_path_factory.mktemp("home"))
    db = Database(settings.database_url)
    with DemoMall(tmp_path_factory.mktemp("demo"), platforms=False) as mall:
        with db.session() as s:
            run_id = upsert_run(s, "daily", datetime(2024, 6, 1, 21), datetime(2024, 6, 2, 21)).id
            targets = {slug: upsert_target(s, f"demo {slug}", url + "/", max_pages=50).id for slug, url in mall.base_urls.items()}
        first = {slug: crawl_target(settings, tid, run_id, SEEN, FAST) for slug, tid in targets.items()}
        rows = snapshot(db)
        first_requests = mall.requests
        mall.clear_requests()
        second = {slug: crawl_target(settings, tid, run_id, SEEN, FAST) for slug, tid in targets.items()}
        yield DemoCrawl(mall, settings, db, run_id, targets, first, second, rows, first_requests, mall.requests)
    db.dispose()


def shops(demo: DemoCrawl) -> Iterator[tuple[str, dict]]:
    for shop in demo.mall.manifest["shops"]:
        yield demo.mall.base_urls[shop["slug"]], shop


def defective(demo: DemoCrawl, slug: str, defect: str) -> dict:
    shop = next(shop for _, shop in shops(demo) if shop["slug"] == slug)
    return next(p for p in shop["products"] if p.get("defect") == defect)


def page_of(s, url: str) -> Page:
    page = s.scalar(select(Page).where(Page.url == url))
    assert page is not None, f"no page row for {url}"
    return page


def test_counts(demo: DemoCrawl) -> None:
    for base, shop in shops(demo):
        counts = demo.first[shop["slug"]]
        assert set(counts) == COUNT_KEYS
        assert counts["finish_reason"] == "finished"
        assert counts["pages"] == len(shop["products"])
        assert counts["requests"] >= counts["pages"] + counts["images"]
        assert counts["bytes_downloaded"] > counts["image_bytes"] > 0
        assert counts["robots_forbidden"] == 0 and counts["errors"] == 0
    assert demo.first["mall-a"]["image_failures"] == 1 and demo.first["mall-a"]["failures"] == 1
    assert demo.first["mall-b"]["images_bad"] == 1


def test_one_page_per_product_with_text_fields(demo: DemoCrawl) -> None:
    with demo.db.session() as s:
        for base, shop in shops(demo):
            target = s.get(CrawlTarget, demo.targets[shop["slug"]])
            for product in shop["products"]:
                page = page_of(s, f"{base}/product/detail.html?product_no={product['product_no']}")
                assert page.title == product["title"]  # hostile titles are stored as data, unchanged
                assert page.price == f"{product['price']:,}원"
                assert page.platform == "cafe24" and page.shop == target.name
                assert page.target_id == target.id and page.last_run_id == demo.run_id
                assert page.first_seen == page.last_seen == SEEN
                assert page.seller["company"] == shop["seller"]["상호"]
                assert page.seller["business_number"] == shop["seller"]["사업자등록번호"]
                assert page.content_sha256 and page.etag
        assert s.scalar(select(func.count(Page.id))) == sum(len(shop["products"]) for _, shop in shops(demo))


def test_images_stored_once_by_sha_with_the_served_bytes(demo: DemoCrawl) -> None:
    store = ContentStore(demo.settings.store_dir)
    with demo.db.session() as s:
        links = s.execute(select(PageImage.url, Image.sha256, Image.size_bytes).join(Image, PageImage.image_id == Image.id)).all()
    assert links
    for url, sha, size in links:
        with urllib.request.urlopen(url, timeout=10) as response:
            served = response.read()
        stored = store.read(sha)
        assert stored == served and len(stored) == size
        assert hashlib.sha256(stored).hexdigest() == sha
    assert not list(store.root.rglob(".tmp-*"))


def test_links_keep_roles_and_page_order(demo: DemoCrawl) -> None:
    with demo.db.session() as s:
        for base, shop in shops(demo):
            for product in shop["products"]:
                page = page_of(s, f"{base}/product/detail.html?product_no={product['product_no']}")
                rows = s.execute(
                    select(PageImage.role, PageImage.position, PageImage.url).where(PageImage.page_id == page.id).order_by(PageImage.role, PageImage.position)
                ).all()
                detail = [(pos, url) for role, pos, url in rows if role == "detail"]
                expected = list(enumerate(base + served_path(rel) for rel in product["detail_images"]))
                if product.get("defect") == "missing_image":
                    expected = expected[1:]
                assert detail == expected
                assert [url for role, _, url in rows if role == "product"] == [base + served_path(product["main_image"])]


def test_missing_image_is_a_skip(demo: DemoCrawl) -> None:
    product = defective(demo, "mall-a", "missing_image")
    url = demo.mall.base_urls["mall-a"] + served_path(product["detail_images"][0])
    with demo.db.session() as s:
        skip = s.scalar(select(Skip).where(Skip.subject == url))
        assert skip is not None and skip.stage == "download" and skip.run_id == demo.run_id
        assert skip.reason == "HTTP 404 Not Found"
        assert s.scalar(select(func.count(PageImage.id)).where(PageImage.url == url)) == 0


def test_corrupt_image_is_a_bad_image_row(demo: DemoCrawl) -> None:
    product = defective(demo, "mall-b", "corrupt_image")
    url = demo.mall.base_urls["mall-b"] + served_path(product["detail_images"][0])
    with demo.db.session() as s:
        image = s.scalar(select(Image).join(PageImage, PageImage.image_id == Image.id).where(PageImage.url == url))
        assert image.status == "bad" and image.reason and image.width is None
        skip = s.scalar(select(Skip).where(Skip.subject == url))
        assert skip.stage == "decode" and image.sha256 in skip.reason
        assert s.scalar(select(func.count(Image.id)).where(Image.status == "bad")) == 1


def test_robots_txt_fetched_and_obeyed(demo: DemoCrawl) -> None:
    paths = [r.path for r in demo.mall.requests]
    assert "/robots.txt" in paths
    assert not [p for p in paths if p.startswith(("/myshop/", "/order/", "/member/"))]


def test_second_crawl_adds_no_rows(demo: DemoCrawl) -> None:
    assert snapshot(demo.db) == demo.rows_after_first
    for slug, counts in demo.second.items():
        assert counts["pages"] == demo.first[slug]["pages"]
        assert counts["files_new"] == 0


def test_second_crawl_of_an_unchanged_shop_downloads_no_image(demo: DemoCrawl) -> None:
    """Conditional requests: every product page answers 304, so no image is requested and nothing is stored again."""
    for slug, counts in demo.second.items():
        assert counts["pages_unchanged"] == counts["pages"] == demo.first[slug]["pages"]
        assert counts["image_bytes"] == 0 and counts["images_unchanged"] == 0
        assert counts["images_relinked"] == demo.first[slug]["images"]
    image_gets = [r for r in demo.second_requests if r.path.startswith("/web/")]
    assert image_gets == []
    product_gets = [r for r in demo.second_requests if r.path.startswith("/product/") and not r.path.startswith("/product/list.html")]
    assert product_gets and all(r.status == 304 and r.bytes_sent == 0 for r in product_gets)
    first_bytes = sum(r.bytes_sent for r in demo.first_requests)
    second_bytes = sum(r.bytes_sent for r in demo.second_requests)
    assert second_bytes < 0.1 * first_bytes, (second_bytes, first_bytes)
    with demo.db.session() as s:
        linked = s.scalar(select(func.count()).select_from(PageImage).where(PageImage.last_run_id == demo.run_id))
        total = s.scalar(select(func.count()).select_from(PageImage))
    assert linked == total > 0


# ------------------------------------------------------------------ a tiny shop with robots.txt rules


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 60), colour).save(buf, format="PNG")
    return buf.getvalue()


def tiny_shop_routes() -> dict[str, tuple[str, bytes]]:
    products = "".join(f'<a href="/product/detail.html?product_no={n}&cate_no=1">p{n}</a>' for n in range(1, 4))
    listing = (
        f'<html><body>{products}<a href="/product/secret-item/9/category/1/display/1/">secret</a>'
        '<a href="/product/list.html?cate_no=1&amp;page=2">2</a></body></html>'
    )
    page2 = '<html><body><a href="/product/detail.html?product_no=4&amp;cate_no=1">p4</a></body></html>'
    routes = {
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /product/secret-item/\nDisallow: /web/upload/private/\n"),
        "/": ("text/html; charset=utf-8", listing.encode()),
        "/product/list.html?cate_no=1&page=2": ("text/html; charset=utf-8", page2.encode()),
        "/web/upload/open.png": ("image/png", png((200, 30, 30))),
        "/web/upload/private/hidden.png": ("image/png", png((30, 30, 200))),
    }
    for n in range(1, 5):
        body = (
            f'<html><body><div class="xans-product-detaildesign"><table><tr><th>상품명</th><td>상품 {n}</td></tr></table></div>'
            '<div id="prdDetail"><img src="data:image/gif;base64,R0lGOD" ec-data-src="/web/upload/open.png">'
            '<img ec-data-src="/web/upload/private/hidden.png"></div></body></html>'
        )
        routes[f"/product/detail.html?product_no={n}&cate_no=1"] = ("text/html; charset=utf-8", body.encode())
    return routes


class TinyShop(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TinyHandler)
        self.routes = tiny_shop_routes()
        self.seen: list[tuple[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class TinyHandler(BaseHTTPRequestHandler):
    server: TinyShop

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.seen.append((self.path, self.headers.get("User-Agent", "")))
        content_type, body = self.server.routes.get(self.path, ("text/plain", b""))
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def tiny_shop() -> Iterator[TinyShop]:
    server = TinyShop()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_robots_disallowed_paths_are_never_requested(tiny_shop: TinyShop, tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    counts = crawl_url(settings, tiny_shop.url + "/", seen=SEEN, extra_scrapy_settings=FAST)
    paths = [p for p, _ in tiny_shop.seen]
    assert not [p for p in paths if "secret-item" in p or "/private/" in p]
    assert counts["pages"] == 4 and counts["robots_forbidden"] == 2
    assert {ua for _, ua in tiny_shop.seen} == {settings.user_agent}
    db = Database(settings.database_url)
    with db.session() as s:
        skips = dict(s.execute(select(Skip.subject, Skip.reason)).all())
    db.dispose()
    assert skips[tiny_shop.url + "/product/secret-item/9/category/1/display/1/"] == "Forbidden by robots.txt"
    assert skips[tiny_shop.url + "/web/upload/private/hidden.png"] == "Forbidden by robots.txt"


def test_max_pages_limits_product_pages(tiny_shop: TinyShop, tmp_path: Path) -> None:
    counts = crawl_url(load_settings(tmp_path), tiny_shop.url + "/", seen=SEEN, max_pages=2, extra_scrapy_settings=FAST)
    assert counts["pages"] == 2
    assert len([p for p, _ in tiny_shop.seen if p.startswith("/product/")]) == 2


def test_max_depth_limits_listing_pages(tiny_shop: TinyShop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYWATCH_SCRAPY_SETTINGS", json.dumps(FAST))  # the environment's way to tune a crawl
    counts = crawl_url(load_settings(tmp_path), tiny_shop.url + "/", seen=SEEN, max_depth=0)
    assert counts["pages"] == 3
    assert "/product/list.html?cate_no=1&page=2" not in [p for p, _ in tiny_shop.seen]


def test_limits_are_set_per_target(tiny_shop: TinyShop, cw_home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """`copywatch target add --max-pages/--max-depth` store each target's limits; its crawl (the daily task's) obeys them."""
    from pipeline.cli import main

    assert main(["target", "add", "two pages", tiny_shop.url + "/", "--max-pages", "2"]) == 0
    assert main(["target", "add", "start page only", tiny_shop.url + "/", "--max-depth", "0"]) == 0
    assert main(["target", "list"]) == 0
    listed = capsys.readouterr().out
    assert "max_pages=2\tmax_depth=4" in listed and "max_pages=500\tmax_depth=0" in listed
    db = Database(cw_home.database_url)
    try:
        with db.session() as s:
            targets = {t.name: t.id for t in s.scalars(select(CrawlTarget))}
            run_id = upsert_run(s, "daily", datetime(2024, 6, 1, 21), datetime(2024, 6, 2, 21)).id
    finally:
        db.dispose()
    two = crawl_target(cw_home, targets["two pages"], run_id, SEEN, FAST)
    assert two["pages"] == 2
    assert len([p for p, _ in tiny_shop.seen if p.startswith("/product/detail.html")]) == 2
    tiny_shop.seen.clear()
    shallow = crawl_target(cw_home, targets["start page only"], run_id, SEEN, FAST)
    assert shallow["pages"] == 3  # the start page's products; its page-2 listing is not followed
    assert "/product/list.html?cate_no=1&page=2" not in [p for p, _ in tiny_shop.seen]


@pytest.mark.parametrize("option", [("--max-pages", "0"), ("--max-pages", "-1"), ("--max-depth", "-1"), ("--max-pages", "x")])
def test_target_limits_are_validated(cw_home: Settings, option: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """0 pages or a negative depth is an error, not "no limit" (the spider used to read 0 pages as its default, 500)."""
    from pipeline.cli import main
    from crawler.spiders.shop import ShopSpider

    with pytest.raises(SystemExit) as exited:
        main(["target", "add", "shop", "http://127.0.0.1:9/", *option])
    assert exited.value.code == 2 and option[0] in capsys.readouterr().err
    name = option[0].removeprefix("--").replace("-", "_")
    if option[1] != "x":
        with pytest.raises(ValueError, match=f"{name} must be at least"):
            ShopSpider(start_url="http://127.0.0.1:9/", platform="cafe24", seen="2024-06-02", **{name: option[1]})


def test_failed_crawl_raises_with_the_log_tail(tmp_path: Path) -> None:
    broken = {**FAST, "ITEM_PIPELINES": {"crawler.no_such_module.Pipeline": 1}}
    with pytest.raises(RuntimeError, match="no_such_module"):
        crawl_url(load_settings(tmp_path), "http://127.0.0.1:9/", extra_scrapy_settings=broken)
