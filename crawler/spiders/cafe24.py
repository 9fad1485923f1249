"""Cafe24 spider: the shop spider with its platform fixed to Cafe24 (``scrapy crawl cafe24 -a start_url=URL``)."""
from __future__ import annotations

from crawler.spiders.shop import ShopSpider, failure_reason, load_target, write_stats  # noqa: F401 (kept importable here)


class Cafe24Spider(ShopSpider):
    """Arguments as :class:`ShopSpider`; the platform is always ``cafe24``."""

    name = "cafe24"
    default_platform = "cafe24"

    def __init__(self, *args: object, platform: str | None = None, **kwargs: object) -> None:
        if platform not in (None, "", "cafe24"):
            raise ValueError(f"the cafe24 spider crawls Cafe24 shops only, not {platform!r}: use `scrapy crawl shop`")
        super().__init__(*args, platform="cafe24", **kwargs)
