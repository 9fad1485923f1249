"""Godomall5 adapter (NHN Commerce): product URLs (current and legacy path), listings and product pages."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "godomall"
NEEDS_BROWSER = False

_VIEW_PATHS = ("/goods/goods_view.php", "/shop/goods/goods_view.php")
_LIST_PATHS = ("/goods/goods_list.php", "/shop/goods/goods_list.php")
_DETAIL_IMG_CSS = "#detail .detail_cont .txt-manual img, .detail_explain_box img"
_PRODUCT_IMG_CSS = "#mainImage img, .item_photo_big img, .item_photo_slide img, .more_view img, #objImg img"
_TITLE_CSS = ".item_detail_tit h3, .goods_name, #goods_name"
_PRICE_CSS = ".item_price dd, .item_price strong, .price strong"
_SELLER_CSS = ".footer_info, #footer_wrap, .foot_info"


def product_no(url: str) -> int | None:
    """``goodsNo`` of ``/goods/goods_view.php`` (or ``goodsno`` of the legacy ``/shop/goods/``), else None."""
    return common.query_product_no(url, _VIEW_PATHS, "goodsNo")


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    """``<scheme>://<host>/goods/goods_view.php?goodsNo=N`` (the legacy path keeps its own ``goodsno``)."""
    number = common.require_product_no(product_no(url), url, "a Godomall")
    path = urlsplit(url).path
    return common.canonical_url(url, path, {"goodsNo" if path == _VIEW_PATHS[0] else "goodsno": number})


def is_listing_url(url: str) -> bool:
    """Category lists (``goods_list.php?cateCd=``) and the home page."""
    path = urlsplit(url).path
    return path in _LIST_PATHS or path in ("", "/", "/main/index.php", "/index.php")


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    """Its URL paths, or Godomall scripts (``gd_*.js``, ``godo``) on the page."""
    if urlsplit(url).path in (*_VIEW_PATHS, *_LIST_PATHS):
        return True
    return response is not None and (common.has_script(response, "/gd_", "godo", "nhn-commerce") or "godo" in common.meta_content(response, "generator"))


def extract_product(response: Response) -> dict:
    """Title, price, gallery and detail images (``.txt-manual`` or ``.detail_explain_box``), seller."""
    return common.selector_product(
        response, PLATFORM, title=_TITLE_CSS, price=_PRICE_CSS, product_images=_PRODUCT_IMG_CSS,
        detail_images=_DETAIL_IMG_CSS, seller=_SELLER_CSS,
    )
