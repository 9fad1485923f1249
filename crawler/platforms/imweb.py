"""Imweb adapter: ``/<menu>/?idx=N`` product pages, Froala detail content and the site footer."""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "imweb"
NEEDS_BROWSER = False

_MENU_PATH = re.compile(r"^/[A-Za-z0-9_-]+/?$")
#: A menu page or the home page (``""``, ``/``): where ``?idx=N`` names a product.
_PRODUCT_PAGE_PATH = re.compile(r"^(?:/[A-Za-z0-9_-]+)?/?$")
_DETAIL_IMG_CSS = "#prod_detail_content_pc img, ._prod_detail_content img, .shop_view_detail .fr-view img"
_PRODUCT_IMG_CSS = "#prod_image_list img, ._prod_image_list img, .shop_view_img img"
_TITLE_CSS = ".view_tit, ._prod_title, .shop_view_title"
_PRICE_CSS = ".real_price, ._prod_price, .shop_view_price"
_SELLER_CSS = "#doz_footer, .doz_footer, ._footer_wrap"


def product_no(url: str) -> int | None:
    """``idx`` of a menu page (``/<menu>/?idx=N``), else None."""
    return common.query_product_no(url, _PRODUCT_PAGE_PATH, "idx")


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    """``<scheme>://<host>/<menu>/?idx=N`` (other query parameters dropped)."""
    number = common.require_product_no(product_no(url), url, "an Imweb")
    path = urlsplit(url).path
    return common.canonical_url(url, path if path.endswith("/") else path + "/", {"idx": number})


def is_listing_url(url: str) -> bool:
    """A menu page without ``idx`` (a shop category), the home page."""
    parts = urlsplit(url)
    return product_no(url) is None and (bool(_MENU_PATH.match(parts.path)) or parts.path in ("", "/"))


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    """Imweb's CDN scripts (``imweb.me``) or its layout ids; the URL form alone is too common."""
    if response is None:
        return False
    return common.has_script(response, "imweb.me", "imweb.") or bool(response.css("#doz_footer, ._prod_detail_content"))


def extract_product(response: Response) -> dict:
    """Title, price, product images, detail images and seller (footer)."""
    return common.selector_product(
        response, PLATFORM, title=_TITLE_CSS, price=_PRICE_CSS, product_images=_PRODUCT_IMG_CSS,
        detail_images=_DETAIL_IMG_CSS, seller=_SELLER_CSS,
    )
