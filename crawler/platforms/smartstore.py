"""Naver Smartstore adapter: JavaScript-rendered pages; product data from ``window.__PRELOADED_STATE__``."""
from __future__ import annotations

import logging
import re
from typing import Any, Iterator
from urllib.parse import urlsplit

from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "smartstore"
#: Class names are hashed and the detail is rendered by script: fetch through Chromium.
NEEDS_BROWSER = True
STATE_VARIABLE = "window.__PRELOADED_STATE__"

_PRODUCT_PATH = re.compile(r"^/([A-Za-z0-9_-]+)/products/(\d+)/?$")
_STORE_PATH = re.compile(r"^/([A-Za-z0-9_-]+)(?:/category/[A-Za-z0-9_-]+)?/?$")
#: Smart Editor ONE (stable ``se-`` class names) holds the rendered detail.
_DETAIL_IMG_CSS = ".se-main-container img, .se-module-image img"
#: Seller keys seen in the channel object of the state, mapped to copywatch's seller fields.
_CHANNEL_KEYS = {
    "company": ("channelName", "representativeCompanyName", "businessName"),
    "representative": ("representName", "representativeName"),
    "business_number": ("businessRegistrationNumber", "businessNo", "identity"),
    "mail_order_number": ("mailOrderNumber", "declaredToOnlineMarkettingNumber"),
    "email": ("email", "representativeEmail"),
    "address": ("businessAddress", "address"),
}


def product_no(url: str) -> int | None:
    return common.path_product_no(url, _PRODUCT_PATH, group=2)


def is_product_url(url: str) -> bool:
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    common.require_product_no(product_no(url), url, "a Smartstore")
    store, number = _PRODUCT_PATH.match(urlsplit(url).path).groups()
    return common.canonical_url(url, f"/{store}/products/{number}")


def is_listing_url(url: str) -> bool:
    """The store home ``/<store>`` and its categories."""
    return bool(_STORE_PATH.match(urlsplit(url).path))


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in ("smartstore.naver.com", "m.smartstore.naver.com", "brand.naver.com"):
        return True
    return response is not None and STATE_VARIABLE in response.text and "channelUid" in response.text


def _dicts(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _dicts(v)


def state(response: Response) -> dict:
    """The page's ``__PRELOADED_STATE__`` JSON ({} when absent)."""
    value = common.script_json(response, STATE_VARIABLE)
    return value if isinstance(value, dict) else {}


def _product(data: dict) -> dict:
    return next((d for d in _dicts(data) if isinstance(d.get("productImages"), list)), {})


def _channel(data: dict) -> dict:
    """The channel (seller) objects of the state merged, the first value of each key winning."""
    merged: dict = {}
    for d in _dicts(data):
        if isinstance(d.get("channelUid"), str):
            for k, v in d.items():
                merged.setdefault(k, v)
    return merged


def _state_images(product: dict, response: Response) -> list[str]:
    images = sorted((i for i in product.get("productImages", []) if isinstance(i, dict)), key=lambda i: i.get("order", 0))
    urls = [common.absolute_image(str(i.get("url", "")), response) for i in images]
    return list(dict.fromkeys(u for u in urls if u))


def _state_detail_html(data: dict) -> str:
    for d in _dicts(data):
        value = d.get("detailContentText")
        if isinstance(value, str):
            return value
    return ""


def extract_seller(response: Response, data: dict) -> dict[str, str]:
    """The rendered 판매자정보 section, completed from the state's channel object."""
    seller = common.extract_seller(response)
    channel = _channel(data)
    for field, keys in _CHANNEL_KEYS.items():
        if field in seller:
            continue
        value = next((channel[k] for k in keys if isinstance(channel.get(k), str) and channel[k].strip()), None)
        if value:
            seller[field] = value.strip()[:200]
    if channel.get("channelUid"):
        seller["channel_uid"] = str(channel["channelUid"])[:100]
    return seller


def extract_product(response: Response) -> dict:
    """Title, price and product images from the state; detail images from the state's HTML and the rendered page."""
    data = state(response)
    if not data:
        log.warning("no %s on %s (not rendered, or not a product page)", STATE_VARIABLE, response.url)
    product = _product(data)
    price = product.get("salePrice") or product.get("discountedSalePrice")
    detail = common.html_image_urls(_state_detail_html(data), response) + common.image_urls(response, _DETAIL_IMG_CSS)
    return {
        "platform": PLATFORM,
        "title": (product.get("name") if isinstance(product.get("name"), str) else None) or common.meta_title(response),
        "price": f"{int(price):,}원" if isinstance(price, (int, float)) else common.money(str(price) if price else None),
        "product_images": _state_images(product, response),
        "detail_images": list(dict.fromkeys(detail)),
        "seller": extract_seller(response, data),
    }
