"""Platform adapters: one module per shop platform, detection from URL and page, and refused hosts."""
from __future__ import annotations

import logging
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from scrapy.http import Response

log = logging.getLogger(__name__)

#: Platform name -> adapter module. Each adapter has ``PLATFORM``, ``NEEDS_BROWSER``, ``is_product_url``,
#: ``canonical_product_url``, ``is_listing_url``, ``listing_links``, ``detect(url, response)`` and
#: ``extract_product(response)``; iframe platforms add ``iframe_url`` and ``frame_detail_images``,
#: MakeShop adds ``blocked_reason``.
MODULES = {
    "cafe24": "crawler.platforms.cafe24",
    "godomall": "crawler.platforms.godomall",
    "makeshop": "crawler.platforms.makeshop",
    "imweb": "crawler.platforms.imweb",
    "smartstore": "crawler.platforms.smartstore",
    "11st": "crawler.platforms.elevenst",
    "gmarket": "crawler.platforms.gmarket",
    "generic": "crawler.platforms.generic",
}
PLATFORMS = tuple(MODULES)
#: Detection order: hosts and explicit markers first, the configured generic shops, the broad Cafe24 last.
_DETECT_ORDER = ("smartstore", "11st", "gmarket", "generic", "godomall", "makeshop", "imweb", "cafe24")

#: Hosts copywatch refuses to crawl, and why (their robots.txt forbids it).
REFUSED_HOSTS = {
    "coupang.com": "Coupang's robots.txt disallows all generic user agents and a bot wall answers 403; it is out of scope",
}


def adapter(platform: str) -> ModuleType:
    """The adapter module of a platform name (``cafe24``, ``11st``, ...)."""
    if platform not in MODULES:
        raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    return import_module(MODULES[platform])


def refused_reason(url: str) -> str | None:
    """Why copywatch will not crawl ``url`` (a refused host or one of its subdomains), else None."""
    host = (urlsplit(url).hostname or "").lower()
    for domain, why in REFUSED_HOSTS.items():
        if host == domain or host.endswith("." + domain):
            return why
    return None


def detect(url: str, response: "Response | None" = None) -> str | None:
    """The platform of a page from its URL and, when given, its markup (meta tags, script names); None if unknown."""
    for name in _DETECT_ORDER:
        if adapter(name).detect(url, response):
            log.debug("%s detected as %s", url, name)
            return name
    return _detect_from_links(response) if response is not None else None


def _detect_from_links(response: "Response") -> str | None:
    """The platform whose product-URL form most of the page's links take (a listing without other markers)."""
    if not hasattr(response, "xpath"):
        return None
    hrefs = [response.urljoin(h.strip()) for h in response.xpath("//a/@href").getall()[:500] if h.strip()]
    votes = {name: sum(1 for h in hrefs if adapter(name).is_product_url(h)) for name in _LINK_FORMS}
    best = max(votes, key=votes.get)
    return best if votes[best] > 0 else None


#: Platforms whose product-URL form is distinctive enough to identify a shop by its links.
_LINK_FORMS = ("cafe24", "godomall", "makeshop", "smartstore", "11st", "gmarket")
