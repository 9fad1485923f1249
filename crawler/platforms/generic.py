"""Generic adapter: shops on no known platform, described per shop by CSS selectors in a YAML file."""
from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from scrapy.http import Response

from crawler.platforms import common
from crawler.platforms.common import ListingLinks

log = logging.getLogger(__name__)

PLATFORM = "generic"
NEEDS_BROWSER = False
#: Where the shop rules are read from (a YAML file: see docs/CRAWLING.md).
CONFIG_ENV = "COPYWATCH_GENERIC_SHOPS"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "generic_shops.yaml"
#: Rules in the data folder (``$COPYWATCH_HOME/generic_shops.yaml``) win over the default file.
HOME_CONFIG = "generic_shops.yaml"


@dataclass(frozen=True)
class ShopRule:
    """One shop: host pattern, URL rules (regular expressions on path and query) and CSS selectors."""

    host: str
    product_url: str
    listing_url: str = r"^/?$"
    title: str = ""
    price: str = ""
    product_images: str = ""
    detail_images: str = ""
    seller: str = ""

    def matches(self, url: str) -> bool:
        return fnmatch.fnmatch(urlsplit(url).netloc.lower(), self.host.lower())


def _path_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def config_path() -> Path:
    """``COPYWATCH_GENERIC_SHOPS``, else ``$COPYWATCH_HOME/generic_shops.yaml`` if present, else the repo's file."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    home = os.environ.get("COPYWATCH_HOME")
    if home and (Path(home) / HOME_CONFIG).exists():
        return Path(home) / HOME_CONFIG
    return DEFAULT_CONFIG


def rules_yaml(host: str) -> str:
    """Rules for the demo's generic shop (``/goods/<n>`` pages) at ``host`` (host:port)."""
    return (f"shops:\n  - host: '{host}'\n    product_url: '^/goods/\\d+$'\n    listing_url: '^/$'\n"
            "    title: .goods-name\n    price: .goods-price\n    product_images: .goods-photos img\n"
            "    detail_images: .goods-story img\n    seller: '#biz'\n")


@lru_cache(maxsize=8)
def load_rules(path: Path) -> tuple[ShopRule, ...]:
    """The shop rules of a YAML file ``{"shops": [{host, product_url, listing_url, title, ...}]}``."""
    if not path.exists():
        log.debug("no generic shop rules at %s", path)
        return ()
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    shops = doc.get("shops") if isinstance(doc, dict) else None
    if not isinstance(shops, list):
        raise ValueError(f"{path}: expected a mapping with a 'shops' list")
    fields = set(ShopRule.__dataclass_fields__)
    rules = []
    for i, row in enumerate(shops):
        if not isinstance(row, dict) or not {"host", "product_url"} <= set(row) or set(row) - fields:
            raise ValueError(f"{path}: shop {i} needs host and product_url and only these keys: {sorted(fields)}")
        rule = ShopRule(**{k: str(v) for k, v in row.items()})
        re.compile(rule.product_url)
        re.compile(rule.listing_url)
        rules.append(rule)
    return tuple(rules)


def rule_for(url: str) -> ShopRule | None:
    return next((r for r in load_rules(config_path()) if r.matches(url)), None)


def is_product_url(url: str) -> bool:
    rule = rule_for(url)
    return rule is not None and re.search(rule.product_url, _path_query(url)) is not None


def canonical_product_url(url: str) -> str:
    """The URL without its fragment (generic shops have no known canonical form)."""
    if not is_product_url(url):
        raise ValueError(f"not a product URL of a configured generic shop: {url!r}")
    parts = urlsplit(url)
    return common.canonical_url(url, parts.path, parts.query)


def is_listing_url(url: str) -> bool:
    rule = rule_for(url)
    return rule is not None and not is_product_url(url) and re.search(rule.listing_url, _path_query(url)) is not None


def listing_links(response: Response) -> ListingLinks:
    return common.listing_links(response, is_product_url, is_listing_url)


def detect(url: str, response: Response | None = None) -> bool:
    """A host listed in the YAML rules."""
    return rule_for(url) is not None


def extract_product(response: Response) -> dict:
    """The fields the shop's rule names selectors for (an unconfigured shop yields only title and seller)."""
    rule = rule_for(response.url)
    if rule is None:
        log.warning("no generic shop rule for %s in %s", response.url, config_path())
        rule = ShopRule(host="*", product_url="$^")
    return {
        "platform": PLATFORM,
        "title": common.first_text(response, rule.title) or common.meta_title(response),
        "price": common.money(common.first_text(response, rule.price)),
        "product_images": common.image_urls(response, rule.product_images),
        "detail_images": common.image_urls(response, rule.detail_images),
        "seller": common.extract_seller(response, rule.seller),
    }
