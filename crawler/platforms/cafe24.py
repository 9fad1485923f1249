"""Cafe24 adapter: URL classification, listing links and product-page extraction (no network)."""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import (  # noqa: F401 (re-exported: the Cafe24 adapter's public helpers)
    ListingLinks,
    image_url,
    image_urls,
    meta_title,
    money,
    has_script,
    parse_seller,
    seller_text,
    text,
    text_or_none,
)

log = logging.getLogger(__name__)

PLATFORM = "cafe24"
NEEDS_BROWSER = False

_SEO_PRODUCT = re.compile(r"^/product/[^/]+/(\d+)(?:/category/\d+/display/\d+)?/?$")
_SEO_CATEGORY = re.compile(r"^/category/[^/]+/(\d+)/?$")
_DETAIL_PATH = "/product/detail.html"
_LIST_PATH = "/product/list.html"

#: Detail-section images in page order (a CSS union keeps document order, no duplicates).
_DETAIL_IMG_CSS = "#prdDetail img, #prdDetailContentLazy img, .edibot-product-detail img"
#: Desktop skin gallery, mobile skin slider and additional images.
_PRODUCT_IMG_CSS = ".xans-product-image img, .xans-product-mobileimage img, .xans-product-addimage img"


# ---------------------------------------------------------------- URLs


def product_no(url: str) -> int | None:
    """The product number of a Cafe24 product URL (either form), else None."""
    if urlsplit(url).path == _DETAIL_PATH:
        return common.query_product_no(url, (_DETAIL_PATH,), "product_no", name_ignore_case=False)
    return common.path_product_no(url, _SEO_PRODUCT)


def is_product_url(url: str) -> bool:
    """True for ``/product/detail.html?product_no=N`` and ``/product/<name>/<N>/category/...``."""
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    """One URL per product: ``<scheme>://<host>/product/detail.html?product_no=N``."""
    number = common.require_product_no(product_no(url), url, "a Cafe24")
    return common.canonical_url(url, _DETAIL_PATH, {"product_no": number})


def is_listing_url(url: str) -> bool:
    """Category lists (``/product/list.html?cate_no=N``, ``/category/<name>/<N>/``) and the home page."""
    parts = urlsplit(url)
    if parts.path == _LIST_PATH:
        return "cate_no" in parse_qs(parts.query)
    return bool(_SEO_CATEGORY.match(parts.path)) or parts.path in ("", "/", "/index.html")


def listing_links(response: Response) -> ListingLinks:
    """Absolute, same-host product and listing links of a listing page, in page order, deduplicated."""
    return common.listing_links(response, is_product_url, is_listing_url)


# ---------------------------------------------------------------- images


def product_images(response: Response) -> list[str]:
    """Main product image and gallery (desktop ``.xans-product-image``, mobile skin and add-images), in page order."""
    return image_urls(response, _PRODUCT_IMG_CSS)


def detail_images(response: Response) -> list[str]:
    """Images of the detail section (``#prdDetail`` and its lazy / Smart Editor variants)."""
    return image_urls(response, _DETAIL_IMG_CSS)


# ---------------------------------------------------------------- text fields


def info_rows(response: Response) -> dict[str, str]:
    """Label -> value of the product info table (``.xans-product-detaildesign tr``)."""
    rows: dict[str, str] = {}
    for tr in response.css(".xans-product-detaildesign tr"):
        label, value = text(tr.css("th")), text(tr.css("td"))
        if label and label not in rows:
            rows[label] = value
    return rows


def _row(rows: dict[str, str], label: str) -> str | None:
    for key, value in rows.items():
        if key.replace(" ", "") == label:
            return value or None
    return None


def extract_title(response: Response, rows: dict[str, str]) -> str | None:
    """상품명 from the info table, else ``og:title``, else ``<title>``."""
    return _row(rows, "상품명") or meta_title(response)


def extract_price(response: Response, rows: dict[str, str]) -> str | None:
    """판매가 as shown (e.g. ``29,000원``): the first amount in that row."""
    return money(_row(rows, "판매가") or text_or_none(response.css("#span_product_price_text")))


def extract_seller(response: Response) -> dict[str, str]:
    """상호, 대표자, 사업자등록번호, ... from the footer and 판매자정보 sections."""
    return common.extract_seller(response)


def detect(url: str, response: Response | None = None) -> bool:
    """A Cafe24 shop: its URL forms, ``xans-`` modules or Cafe24 / EC Hosting scripts."""
    if is_product_url(url) or urlsplit(url).path == _LIST_PATH:
        return True
    if response is None:
        return False
    return bool(response.css('[class*="xans-"]')) or has_script(response, "cafe24", "echosting")


# ---------------------------------------------------------------- product page


def extract_product(response: Response) -> dict:
    """Everything copywatch keeps from a Cafe24 product page."""
    rows = info_rows(response)
    if not rows:
        log.debug("no product info table (.xans-product-detaildesign) on %s", response.url)
    return {
        "platform": PLATFORM,
        "title": extract_title(response, rows),
        "price": extract_price(response, rows),
        "product_images": product_images(response),
        "detail_images": detail_images(response),
        "seller": extract_seller(response),
    }
