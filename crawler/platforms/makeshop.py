"""MakeShop adapter: ``shopdetail.html?branduid=`` product pages, ``shopbrand.html`` listings, the 403page block."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "makeshop"
NEEDS_BROWSER = False

_VIEW_PATH = "/shop/shopdetail.html"
_LIST_PATHS = ("/shop/shopbrand.html", "/shop/bigsection.html")
_DETAIL_IMG_CSS = "#productDetail .prd-detail img"
_PRODUCT_IMG_CSS = ".shopdetailInfo .thumb img, #productDetail .thumb-wrap img, .multi-img img"
_TITLE_CSS = ".shopdetailInfo .tit-prd, .info .name, h3.tit-prd"
_PRICE_CSS = ".shopdetailInfo .price, .table-opt .price"
#: Part of the image URL MakeShop's block page shows instead of the product.
BLOCK_MARKER = "403page"


def product_no(url: str) -> int | None:
    """``branduid`` of ``/shop/shopdetail.html``, else None."""
    return common.query_product_no(url, (_VIEW_PATH,), "branduid")


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    """``<scheme>://<host>/shop/shopdetail.html?branduid=N`` (category codes dropped)."""
    number = common.require_product_no(product_no(url), url, "a MakeShop")
    return common.canonical_url(url, _VIEW_PATH, {"branduid": number})


def is_listing_url(url: str) -> bool:
    path = urlsplit(url).path
    return path in _LIST_PATHS or path in ("", "/", "/index.html")


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    """Its URL paths, MakeShop scripts or ``/shopimages/`` images."""
    if urlsplit(url).path in (_VIEW_PATH, *_LIST_PATHS):
        return True
    if response is None:
        return False
    return common.has_script(response, "makeshop", "/shopimages/") or bool(response.xpath('//img[contains(@src, "/shopimages/")]'))


def blocked_reason(response: Response) -> str | None:
    """MakeShop answers a blocked client with a page showing a ``403page`` image: a skip, not a product."""
    for src in response.xpath("//img/@src").getall():
        if BLOCK_MARKER in src:
            return f"blocked by MakeShop (block page image {src[:200]!r})"
    return None


def extract_product(response: Response) -> dict:
    """Title, price, thumbnails, detail images (``#productDetail .prd-detail``) and seller."""
    return common.selector_product(
        response, PLATFORM, title=_TITLE_CSS, price=_PRICE_CSS, product_images=_PRODUCT_IMG_CSS,
        detail_images=_DETAIL_IMG_CSS,
    )
