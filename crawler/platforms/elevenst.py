"""11st (11번가) adapter: ``/products/<id>`` pages whose detail sits in the ``#prdDescIfrm`` iframe."""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "11st"
NEEDS_BROWSER = False

_PRODUCT_PATH = re.compile(r"^/products/(\d+)/?$")
_LIST_PATH = re.compile(r"^/(?:category|browsing)/")
_IFRAME_CSS = "iframe#prdDescIfrm"
_PRODUCT_IMG_CSS = "#productImg img, .img_full img, .c_product_view_img img"
_TITLE_CSS = ".c_product_info_title h1, h1.title"
_PRICE_CSS = ".c_product_price dd, .price_detail dd, .sale_price"
_SELLER_CSS = ".c_product_seller_info, #sellerInfo, .seller_info"


def product_no(url: str) -> int | None:
    return common.path_product_no(url, _PRODUCT_PATH)


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    number = common.require_product_no(product_no(url), url, "an 11st")
    return common.canonical_url(url, f"/products/{number}")


def is_listing_url(url: str) -> bool:
    path = urlsplit(url).path
    return bool(_LIST_PATH.match(path)) or path in ("", "/")


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    if common.on_domain(url, "11st.co.kr"):
        return True
    return response is not None and bool(response.css(_IFRAME_CSS))


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
