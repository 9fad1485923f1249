"""Shop spider: follows one shop's listing pages and yields product pages, dispatching to the shop's platform adapter."""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.response import response_status_message
from twisted.python.failure import Failure

from crawler import platforms
from crawler.items import ImageRef, PageFailureItem, PageUnchangedItem, ProductPageItem
from crawler.middlewares import META_PAGE

log = logging.getLogger(__name__)

#: Product pages are fetched before further listing pages, so items flow early.
PRODUCT_PRIORITY = 10
#: Detail iframes (11st, Gmarket) finish a product: fetched before anything else.
FRAME_PRIORITY = 20
#: Default product pages per crawl (``max_pages``); ``max_depth`` defaults to the ``DEPTH_LIMIT`` setting.
DEFAULT_MAX_PAGES = 500
#: Levels of requests below the deepest listing page: its product pages, and their detail iframes (11st, Gmarket).
#: Scrapy's ``DEPTH_LIMIT`` is ``max_depth`` plus these levels, so it never drops a product page or its frame.
LEVELS_BELOW_LISTINGS = 2
#: Scrolls a rendered page to its end step by step (twice: content rendered late grows the page), so lazy images
#: swap their placeholders for real URLs.
SCROLL_JS = """async () => {
  const pause = ms => new Promise(r => setTimeout(r, ms));
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  for (let pass = 0; pass < 2; pass++) {
    for (let y = 0; y < document.body.scrollHeight; y += Math.max(200, window.innerHeight / 2)) {
      window.scrollTo(0, y);
      await frame();
      await pause(30);
    }
    window.scrollTo(0, document.body.scrollHeight);
    await frame();
    await pause(300);
  }
}"""


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _limit(name: str, value: Any, minimum: int) -> int | None:
    """A crawl limit given as a spider argument (None when absent); below ``minimum`` is an error, not "no limit"."""
    number = _opt_int(value)
    if number is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def load_target(target_id: int) -> dict[str, Any]:
    """Start URL, name, platform and limits of a ``crawl_targets`` row (for ``-a target_id=N`` alone)."""
    from pipeline.config import load_settings
    from pipeline.db import CrawlTarget, Database

    db = Database(load_settings().database_url)
    try:
        with db.session() as s:
            target = s.get(CrawlTarget, target_id)
            if target is None:
                raise ValueError(f"no crawl target with id {target_id}")
            return {
                "start_url": target.start_url, "shop": target.name, "platform": target.platform,
                "max_pages": target.max_pages, "max_depth": target.max_depth,
            }
    finally:
        db.dispose()


class ShopSpider(scrapy.Spider):
    """Arguments: ``start_url`` or ``target_id``; ``platform`` (detected from the start page when absent);
    ``run_id``, ``seen`` (ISO date), ``shop``, ``max_pages``, ``max_depth``.

    Listing pages are followed up to ``max_depth`` links from the start URL (default: the
    ``DEPTH_LIMIT`` setting); the product pages they link to are fetched, at most ``max_pages``.
    Platforms that render with JavaScript are fetched through Chromium (scrapy-playwright).
    """

    name = "shop"
    #: The platform when none is given and none is detected from the start URL alone.
    default_platform: str | None = None

    def __init__(
        self,
        start_url: str | None = None,
        target_id: str | int | None = None,
        run_id: str | int | None = None,
        seen: str | None = None,
        shop: str | None = None,
        max_pages: str | int | None = None,
        max_depth: str | int | None = None,
        platform: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target_id = _opt_int(target_id)
        if not start_url and self.target_id is not None:
            target = load_target(self.target_id)
            start_url = target["start_url"]
            shop = shop or target["shop"]
            platform = platform or target["platform"]
            max_pages = target["max_pages"] if max_pages in (None, "") else max_pages
            max_depth = target["max_depth"] if max_depth in (None, "") else max_depth
        if not start_url:
            raise ValueError(f"the {self.name} spider needs -a start_url=URL or -a target_id=N")
        why = platforms.refused_reason(start_url)
        if why:
            raise ValueError(f"refusing to crawl {start_url}: {why}")
        self.start_url = start_url
        self.host = urlsplit(start_url).netloc.lower()
        self.platform: str | None = platform or platforms.detect(start_url) or self.default_platform
        if self.platform is not None:
            platforms.adapter(self.platform)  # an unknown name fails here, before any request
        self.run_id = _opt_int(run_id)
        if not seen:
            log.warning("no -a seen=YYYY-MM-DD given: using today's date")
        self.seen = date.fromisoformat(seen) if seen else date.today()
        self.shop = shop or self.host
        pages = _limit("max_pages", max_pages, 1)
        self.max_pages = DEFAULT_MAX_PAGES if pages is None else pages
        self.max_depth = _limit("max_depth", max_depth, 0)
        self._products: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> "ShopSpider":
        spider = super().from_crawler(crawler, *args, **kwargs)
        if spider.platform is not None and platforms.adapter(spider.platform).NEEDS_BROWSER:
            # Only requests with meta["playwright"] go through Chromium; the rest keep Scrapy's own handler.
            crawler.settings.set("DOWNLOAD_HANDLERS", crawler.settings.getdict("COPYWATCH_BROWSER_DOWNLOAD_HANDLERS"), priority="spider")
        if spider.max_depth is None:
            limit = crawler.settings.getint("DEPTH_LIMIT")
            if limit <= 0:  # Scrapy's "no limit"
                spider.max_depth = sys.maxsize
                return spider
            spider.max_depth = limit
        # The spider stops following listings at max_depth itself; Scrapy's own limit is a safety net below the
        # deepest listing's products and their detail iframes (one level less would drop those frames, and with
        # them the products, without a trace).
        crawler.settings.set("DEPTH_LIMIT", spider.max_depth + LEVELS_BELOW_LISTINGS, priority="spider")
        return spider

    @property
    def adapter(self) -> ModuleType:
        if self.platform is None:
            raise RuntimeError("the platform is not known yet")
        return platforms.adapter(self.platform)

    async def start(self) -> AsyncIterator[Request]:
        log.info("crawling %s (shop %r, platform %s, at most %d product pages)", self.start_url, self.shop, self.platform or "to detect", self.max_pages)
        if self.platform is None:
            yield Request(self.start_url, callback=self.parse_start, errback=self.on_error)
        elif self.adapter.is_product_url(self.start_url):
            yield self._product_request(self.start_url, self.adapter.canonical_product_url(self.start_url))
        else:
            yield self._request(self.start_url, self.parse_listing)

    def _request(self, url: str, callback: Any, **kwargs: Any) -> Request:
        """A request, through Chromium (page kept for the callback to close, scrolled to its end) when the platform needs it."""
        if self.platform is not None and self.adapter.NEEDS_BROWSER:
            from scrapy_playwright.page import PageMethod

            meta = {**kwargs.pop("meta", {}), "playwright": True, "playwright_include_page": True,
                    "playwright_page_methods": [PageMethod("wait_for_load_state", "networkidle"), PageMethod("evaluate", SCROLL_JS)]}
            return Request(url, callback=callback, errback=self.on_error, meta=meta, **kwargs)
        return Request(url, callback=callback, errback=self.on_error, **kwargs)

    def _product_request(self, url: str, canonical: str) -> Request:
        """A product page; made conditional on the stored page's validators (a 304 reaches the callback)."""
        self._products.add(canonical)
        meta = {META_PAGE: canonical, "handle_httpstatus_list": [304]}
        return self._request(url, self.parse_product, priority=PRODUCT_PRIORITY, cb_kwargs={"canonical": canonical}, meta=meta)

    def _budget_left(self) -> bool:
        return len(self._products) < self.max_pages

    async def parse_start(self, response: Response) -> AsyncIterator[Any]:
        """Detect the platform from the start page, then treat it as a product or listing page."""
        platform = platforms.detect(response.url, response) if isinstance(response, TextResponse) else None
        if platform is None:
            yield self._failure(response.url, "platform not detected (give the target a platform)")
            return
        log.info("%s detected as %s", response.url, platform)
        self.platform = platform
        if self.adapter.NEEDS_BROWSER:
            yield self._failure(response.url, f"platform {platform} needs a browser: give the target --platform {platform}")
            return
        if self.adapter.is_product_url(response.url):
            canonical = self.adapter.canonical_product_url(response.url)
            self._products.add(canonical)
            async for item in self.parse_product(response, canonical):
                yield item
        else:
            async for request in self.parse_listing(response):
                yield request

    async def parse_listing(self, response: Response) -> AsyncIterator[Request]:
        await self._close_page(response.meta)
        if not isinstance(response, TextResponse):
            log.warning("listing %s is not a text page (%s); not followed", response.url, response.headers.get("Content-Type"))
            return
        links = self.adapter.listing_links(response)
        for url in links.products:
            canonical = self.adapter.canonical_product_url(url)
            if canonical in self._products or not self._budget_left():
                continue
            yield self._product_request(url, canonical)
        if not self._budget_left() or response.meta.get("depth", 0) >= self.max_depth:
            return
        for url in links.listings:
            if urlsplit(url).netloc.lower() == self.host:
                yield self._request(url, self.parse_listing)

    async def parse_product(self, response: Response, canonical: str) -> AsyncIterator[Any]:
        await self._close_page(response.meta)
        if response.status == 304:
            yield PageUnchangedItem(url=canonical, shop=self.shop, target_id=self.target_id, run_id=self.run_id, seen=self.seen)
            return
        if not isinstance(response, TextResponse):
            yield self._failure(response.url, f"not an HTML page: {response.headers.get('Content-Type')!r}")
            return
        blocked = getattr(self.adapter, "blocked_reason", None)
        reason = blocked(response) if blocked else None
        if reason:
            log.warning("page %s: %s", response.url, reason)
            yield self._failure(response.url, reason)
            return
        data = self.adapter.extract_product(response)
        page = {"fetched_url": response.url, "etag": _header(response, b"ETag"), "last_modified": _header(response, b"Last-Modified"),
                "content_sha256": hashlib.sha256(response.body).hexdigest()}
        frame = getattr(self.adapter, "iframe_url", None)
        frame_url = frame(response) if frame else None
        if frame_url:
            yield Request(frame_url, callback=self.parse_frame, errback=self.on_frame_error, priority=FRAME_PRIORITY,
                          cb_kwargs={"data": data, "canonical": canonical, "page": page})
            return
        yield self._item(data, canonical, page)

    def parse_frame(self, response: Response, data: dict, canonical: str, page: dict) -> Any:
        """The detail iframe of a product page: its images are the product's detail images."""
        if isinstance(response, TextResponse):
            data = {**data, "detail_images": self.adapter.frame_detail_images(response)}
        else:
            log.warning("detail frame %s is not a text page", response.url)
        yield self._item(data, canonical, page)

    def on_frame_error(self, failure: Failure) -> Any:
        """A failed detail iframe: the product is kept without detail images, the frame is a skip."""
        kw = failure.request.cb_kwargs
        yield self._failure(failure.request.url, failure_reason(failure))
        yield self._item(kw["data"], kw["canonical"], kw["page"])

    def _item(self, data: dict, canonical: str, page: dict) -> ProductPageItem:
        images = [ImageRef(url, "product", i) for i, url in enumerate(data["product_images"])]
        images += [ImageRef(url, "detail", i) for i, url in enumerate(data["detail_images"])]
        if not data["detail_images"]:
            log.info("no detail images on %s", page["fetched_url"])
        return ProductPageItem(
            url=canonical, shop=self.shop, platform=data["platform"], title=data["title"], price=data["price"],
            seller=data["seller"], images=images, target_id=self.target_id, run_id=self.run_id, seen=self.seen, **page,
        )

    async def on_error(self, failure: Failure) -> AsyncIterator[PageFailureItem]:
        request = failure.request
        await self._close_page(request.meta)
        reason = failure_reason(failure)
        log.warning("page %s not fetched: %s", request.url, reason)
        yield self._failure(request.url, reason)

    async def _close_page(self, meta: dict) -> None:
        """Close the Playwright page a browser request kept for its callback (callbacks and errbacks alike);
        counted as ``copywatch/browser_pages_closed`` (beside scrapy-playwright's ``playwright/page_count``)."""
        page = meta.pop("playwright_page", None)
        if page is not None:
            await page.close()
            self.crawler.stats.inc_value("copywatch/browser_pages_closed")

    def _failure(self, url: str, reason: str) -> PageFailureItem:
        return PageFailureItem(url=url, reason=reason, shop=self.shop, target_id=self.target_id, run_id=self.run_id, seen=self.seen)

    def closed(self, reason: str) -> None:
        path = self.settings.get("COPYWATCH_STATS_FILE")
        stats = dict(self.crawler.stats.get_stats())
        stats["finish_reason"] = reason
        started = stats.get("start_time")
        if isinstance(started, datetime) and "elapsed_time_seconds" not in stats:
            stats["elapsed_time_seconds"] = (datetime.now(started.tzinfo) - started).total_seconds()
        log.info("closed (%s): %d product pages scheduled", reason, len(self._products))
        if path:
            write_stats(Path(path), stats)


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1")[:200] if value else None


def failure_reason(failure: Failure) -> str:
    """A short, human-readable reason for a failed request (``HTTP 404 Not Found``, robots.txt, ...)."""
    if failure.check(HttpError):
        return f"HTTP {response_status_message(failure.value.response.status)}"
    if failure.check(IgnoreRequest):
        return str(failure.value) or "request ignored"
    return f"{type(failure.value).__name__}: {failure.value}"


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """Write the crawl's stats as JSON (atomically, so a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, default=str, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
