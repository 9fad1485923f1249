"""Gmarket adapter: ``item.gmarket.co.kr/Item?goodscode=<id>`` pages whose detail sits in the ``#detail1`` iframe."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "gmarket"
NEEDS_BROWSER = False

_ITEM_PATH = "/Item"
_IFRAME_CSS = "iframe#detail1"
_PRODUCT_IMG_CSS = ".box__viewer-container img, #container .thumb-gallery img, .box__thumbnail img"
_TITLE_CSS = "h1.itemtit, .itemtit"
_PRICE_CSS = "strong.price_real, .price_innerwrap .price_real"
_SELLER_CSS = ".box__seller-info, #vip-tab_exchange, .seller_info"


def product_no(url: str) -> int | None:
    return common.query_product_no(url, (_ITEM_PATH,), "goodscode", path_ignore_case=True)


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    number = common.require_product_no(product_no(url), url, "a Gmarket")
    return common.canonical_url(url, _ITEM_PATH, {"goodscode": number})


def is_listing_url(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return path.startswith(("/n/list", "/list", "/category")) or path in ("", "/")


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    if common.on_domain(url, "gmarket.co.kr"):
        return True
    return response is not None and bool(response.css(_IFRAME_CSS)) and is_product_url(url)


def iframe_url(response: Response) -> str | None:
    """Absolute URL of the detail iframe, or None."""
    return common.iframe_url(response, _IFRAME_CSS)


frame_detail_images = common.frame_images


def extract_product(response: Response) -> dict:
    """The product page alone: its detail images come from :func:`iframe_url` (empty here)."""
    return common.selector_product(
        response, PLATFORM, title=_TITLE_CSS, price=_PRICE_CSS, product_images=_PRODUCT_IMG_CSS,
        detail_images=None, seller=_SELLER_CSS,
    )
