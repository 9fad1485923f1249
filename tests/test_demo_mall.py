"""Tests for the demo mall: the build's manifest and files, and the shops served over real HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin

import pytest
from parsel import Selector
from PIL import Image

from crawler.demo.build import VERSION, build_demo, served_path
from crawler.demo.server import DemoMall


@pytest.fixture(scope="module")
def mall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoMall]:
    with DemoMall(tmp_path_factory.mktemp("demo")) as running:
        yield running


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def page(url: str) -> Selector:
    status, headers, body = fetch(url)
    assert status == 200, url
    assert headers["Content-Type"].startswith("text/html")
    return Selector(text=body.decode("utf-8"))


def products(mall: DemoMall) -> Iterator[tuple[dict, dict]]:
    for shop in mall.manifest["shops"]:
        for product in shop["products"]:
            yield shop, product


# ------------------------------------------------------------------------------------ manifest


def test_manifest_shape(mall: DemoMall) -> None:
    manifest = mall.manifest
    assert manifest["version"] == VERSION
    assert manifest["client"]["slug"] == "hanbit" and manifest["client"]["name"]
    gallery = manifest["client"]["gallery"]
    assert sum("details/" in g for g in gallery) == 3 and len(gallery) >= 10
    assert [s["slug"] for s in manifest["shops"]] == ["mall-a", "mall-b"]
    for shop in manifest["shops"]:
        assert len(shop["products"]) >= 12
        assert len({p["cate_no"] for p in shop["products"]}) == 2
        assert set(shop["seller"]) >= {"상호", "대표자", "사업자등록번호", "통신판매업신고", "이메일", "주소"}
    sellers = [s["seller"]["사업자등록번호"] for s in manifest["shops"]]
    assert len(set(sellers)) == 2


def test_planted_copies_exist_and_are_spread(mall: DemoMall) -> None:
    planted = mall.manifest["planted"]
    assert Counter(p["kind"] for p in planted) == {"whole_detail": 2, "detail_segment": 2, "mirrored_watermarked": 2}
    for kind in ("whole_detail", "detail_segment", "mirrored_watermarked"):
        assert {p["shop"] for p in planted if p["kind"] == kind} == {"mall-a", "mall-b"}
    by_key = {(s["slug"], p["product_no"]): p for s, p in products(mall)}
    for plant in planted:
        product = by_key[(plant["shop"], plant["product_no"])]
        assert "defect" not in product
        field = product["main_image"] if plant["role"] == "product" else product["detail_images"]
        assert plant["image"] == field or plant["image"] in field
        assert (mall.out_dir / plant["image"]).is_file()
        assert plant["gallery"] in mall.manifest["client"]["gallery"]


def test_gallery_files_exist_and_decode(mall: DemoMall) -> None:
    for relative in mall.manifest["client"]["gallery"]:
        with Image.open(mall.out_dir / relative) as image:
            image.load()
    details = [g for g in mall.manifest["client"]["gallery"] if "details/" in g]
    for relative in details:
        with Image.open(mall.out_dir / relative) as image:
            assert image.width == 860 and image.height >= 3000


def test_unrelated_products_do_not_reuse_gallery_bytes(mall: DemoMall) -> None:
    gallery = {hashlib.sha256((mall.out_dir / g).read_bytes()).hexdigest() for g in mall.manifest["client"]["gallery"]}
    planted = {p["image"] for p in mall.manifest["planted"]}
    for _, product in products(mall):
        for relative in [product["main_image"], *product["detail_images"]]:
            path = mall.out_dir / relative
            if relative not in planted and path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() not in gallery


def test_defects_are_present_and_not_planted(mall: DemoMall) -> None:
    defects = {p["defect"]: p for _, p in products(mall) if "defect" in p}
    assert set(defects) == {"missing_image", "corrupt_image"}
    assert not (mall.out_dir / defects["missing_image"]["detail_images"][0]).exists()
    corrupt = mall.out_dir / defects["corrupt_image"]["detail_images"][0]
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(corrupt)


def test_build_is_idempotent(mall: DemoMall) -> None:
    manifest_file = mall.out_dir / "manifest.json"
    before = manifest_file.stat().st_mtime_ns
    assert build_demo(mall.out_dir) == mall.manifest
    assert manifest_file.stat().st_mtime_ns == before


def test_build_is_deterministic(mall: DemoMall, tmp_path: Path) -> None:
    other = build_demo(tmp_path / "again")
    assert json.dumps(other, sort_keys=True) == json.dumps(mall.manifest, sort_keys=True)
    for plant in mall.manifest["planted"]:
        assert (tmp_path / "again" / plant["image"]).read_bytes() == (mall.out_dir / plant["image"]).read_bytes()


# ------------------------------------------------------------------------------------ HTTP


def test_robots_txt(mall: DemoMall) -> None:
    status, headers, body = fetch(mall.base_urls["mall-a"] + "/robots.txt")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for prefix in ("/myshop/", "/order/", "/member/"):
        assert f"Disallow: {prefix}" in text
    assert "Allow: /" in text


def test_home_links_categories_and_private_page(mall: DemoMall) -> None:
    for shop in mall.manifest["shops"]:
        home = page(mall.base_urls[shop["slug"]] + "/")
        links = home.css("a::attr(href)").getall()
        for category in shop["categories"]:
            assert f"/product/list.html?cate_no={category['cate_no']}" in links
        assert "/myshop/index.html" in links


def test_listing_pagination_reaches_every_product(mall: DemoMall) -> None:
    for shop in mall.manifest["shops"]:
        base = mall.base_urls[shop["slug"]]
        seen: set[int] = set()
        titles: list[str] = []
        for category in shop["categories"]:
            url = f"{base}/product/list.html?cate_no={category['cate_no']}&page=1"
            pages = 0
            while url:
                listing = page(url)
                items = listing.css(".xans-product-listnormal .prdList > li")
                assert 1 <= len(items) <= 5
                for href in items.css(".prdImg a::attr(href)").getall():
                    detail = page(urljoin(url, href))
                    title = detail.css(".xans-product-detaildesign tr td span::text").get()
                    seen.add(next(p["product_no"] for p in shop["products"] if p["title"] == title))
                    titles.append(title)
                nxt = listing.css(".xans-product-normalpaging a.next::attr(href)").get()
                url = urljoin(url, nxt) if nxt and nxt != "#none" else ""
                pages += 1
            assert pages >= 2
        assert seen == {p["product_no"] for p in shop["products"]}
        assert len(titles) == len(set(titles)) == len(shop["products"])


def test_product_page_markup(mall: DemoMall) -> None:
    forms: set[str] = set()
    for shop, product in products(mall):
        base = mall.base_urls[shop["slug"]]
        url = f"{base}/product/detail.html?product_no={product['product_no']}&cate_no={product['cate_no']}"
        sel = page(url)
        labels = sel.css(".xans-product-detaildesign tr th span::text").getall()
        assert "상품명" in labels and "판매가" in labels
        assert sel.css(".xans-product-image img.BigImage::attr(src)").get()
        images = sel.css("#prdDetail .cont img")
        assert len(images) == len(product["detail_images"])
        for img in images:
            assert img.attrib["src"].startswith("data:image/gif;base64,")
            src = img.attrib["ec-data-src"]
            forms.add("protocol_relative" if src.startswith("//") else "root_relative" if src.startswith("/") else "absolute")
        footer = " ".join(sel.css(".xans-layout-footer ::text").getall())
        for key in ("상호", "대표자", "사업자등록번호", "통신판매업신고", "이메일", "주소"):
            assert key in footer and shop["seller"][key] in footer
    assert forms == {"protocol_relative", "root_relative", "absolute"}


def test_detail_images_are_served(mall: DemoMall) -> None:
    outcomes: Counter[str] = Counter()
    for shop, product in products(mall):
        base = mall.base_urls[shop["slug"]]
        url = f"{base}/product/detail.html?product_no={product['product_no']}"
        sel = page(url)
        for src in [*sel.css("#prdDetail img::attr(ec-data-src)").getall(), sel.css("img.BigImage::attr(src)").get()]:
            status, headers, body = fetch(urljoin(url, src))
            if status == 404:
                outcomes["missing"] += 1
                continue
            assert status == 200 and headers["Content-Type"] == "image/jpeg"
            try:
                Image.open(io.BytesIO(body)).load()
                outcomes["ok"] += 1
            except Image.UnidentifiedImageError:
                outcomes["corrupt"] += 1
    assert outcomes["missing"] == 1 and outcomes["corrupt"] == 1 and outcomes["ok"] > 40


def test_seo_url_serves_the_product(mall: DemoMall) -> None:
    shop, product = next((s, p) for s, p in products(mall) if p["seo_link"])
    base = mall.base_urls[shop["slug"]]
    listing = page(f"{base}/product/list.html?cate_no={product['cate_no']}")
    seo_links = [h for h in listing.css(".prdList > li .prdImg a::attr(href)").getall() if "/category/" in h]
    assert seo_links
    for href in {f"/product/any-name/{product['product_no']}/category/{product['cate_no']}/display/1/", seo_links[0]}:
        sel = page(urljoin(base + "/", href))
        assert sel.css(".xans-product-detaildesign").get()


def test_unknown_product_is_404(mall: DemoMall) -> None:
    base = mall.base_urls["mall-a"]
    assert fetch(base + "/product/detail.html?product_no=99999&cate_no=24")[0] == 404
    assert fetch(base + "/product/detail.html")[0] == 404
    assert fetch(base + "/web/upload/../../../manifest.json")[0] == 404


def test_hostile_title_is_escaped(mall: DemoMall) -> None:
    shop, product = next((s, p) for s, p in products(mall) if "<script>" in p["title"])
    status, _, body = fetch(f"{mall.base_urls[shop['slug']]}/product/detail.html?product_no={product['product_no']}")
    html = body.decode()
    assert status == 200
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert Selector(text=html).css(".xans-product-detaildesign tr td span::text").get() == product["title"]


def test_conditional_requests_get_304(mall: DemoMall) -> None:
    plant = mall.manifest["planted"][0]
    url = mall.base_urls[plant["shop"]] + served_path(plant["image"])
    status, headers, body = fetch(url)
    assert status == 200 and body == (mall.out_dir / plant["image"]).read_bytes()
    assert headers["ETag"] and headers["Last-Modified"]
    assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    assert fetch(url, {"If-None-Match": '"stale"'})[0] == 200
    assert fetch(url, {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})[0] == 200


def test_request_log_records_answers(mall: DemoMall) -> None:
    mall.clear_requests()
    base = mall.base_urls["mall-b"]
    fetch(base + "/robots.txt")
    fetch(base + "/product/detail.html?product_no=1")
    records = mall.requests
    assert [(r.shop, r.method, r.path, r.status) for r in records] == [
        ("mall-b", "GET", "/robots.txt", 200),
        ("mall-b", "GET", "/product/detail.html?product_no=1", 404),
    ]
    assert records[0].bytes_sent > 0
