"""Cafe24 spider: follows listing pages of one shop and yields product pages with their image URLs."""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.response import response_status_message
from twisted.python.failure import Failure

from crawler.items import ImageRef, PageFailureItem, ProductPageItem
from crawler.platforms import cafe24

log = logging.getLogger(__name__)

#: Product pages are fetched before further listing pages, so items flow early.
PRODUCT_PRIORITY = 10


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def load_target(target_id: int) -> dict[str, Any]:
    """Start URL, name and limits of a ``crawl_targets`` row (for ``-a target_id=N`` alone)."""
    from pipeline.config import load_settings
    from pipeline.db import CrawlTarget, Database

    db = Database(load_settings().database_url)
    try:
        with db.session() as s:
            target = s.get(CrawlTarget, target_id)
            if target is None:
                raise ValueError(f"no crawl target with id {target_id}")
            return {"start_url": target.start_url, "shop": target.name, "max_pages": target.max_pages, "max_depth": target.max_depth}
    finally:
        db.dispose()


class Cafe24Spider(scrapy.Spider):
    """Arguments: ``start_url`` or ``target_id``; ``run_id``, ``seen`` (ISO date), ``shop``, ``max_pages``, ``max_depth``.

    Listing pages are followed up to ``max_depth`` links from the start URL (default: the
    ``DEPTH_LIMIT`` setting); the product pages they link to are fetched, at most ``max_pages``.
    """

    name = "cafe24"

    def __init__(
        self,
        start_url: str | None = None,
        target_id: str | int | None = None,
        run_id: str | int | None = None,
        seen: str | None = None,
        shop: str | None = None,
        max_pages: str | int | None = None,
        max_depth: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target_id = _opt_int(target_id)
        if not start_url and self.target_id is not None:
            target = load_target(self.target_id)
            start_url = target["start_url"]
            shop = shop or target["shop"]
            max_pages = max_pages or target["max_pages"]
            max_depth = max_depth or target["max_depth"]
        if not start_url:
            raise ValueError("the cafe24 spider needs -a start_url=URL or -a target_id=N")
        self.start_url = start_url
        self.host = urlsplit(start_url).netloc.lower()
        self.run_id = _opt_int(run_id)
        if not seen:
            log.warning("no -a seen=YYYY-MM-DD given: using today's date")
        self.seen = date.fromisoformat(seen) if seen else date.today()
        self.shop = shop or self.host
        self.max_pages = _opt_int(max_pages) or 500
        self.max_depth = _opt_int(max_depth)
        self._products: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> "Cafe24Spider":
        spider = super().from_crawler(crawler, *args, **kwargs)
        if spider.max_depth is None:
            limit = crawler.settings.getint("DEPTH_LIMIT")
            if limit <= 0:  # Scrapy's "no limit"
                spider.max_depth = sys.maxsize
                return spider
            spider.max_depth = limit
        # Scrapy's own limit is a safety net one level below the deepest listing: its products.
        crawler.settings.set("DEPTH_LIMIT", spider.max_depth + 1, priority="spider")
        return spider

    async def start(self) -> AsyncIterator[Request]:
        log.info("crawling %s (shop %r, at most %d product pages)", self.start_url, self.shop, self.max_pages)
        if cafe24.is_product_url(self.start_url):
            yield self._product_request(self.start_url, cafe24.canonical_product_url(self.start_url))
        else:
            yield Request(self.start_url, callback=self.parse_listing, errback=self.on_error)

    def _product_request(self, url: str, canonical: str) -> Request:
        self._products.add(canonical)
        return Request(
            url, callback=self.parse_product, errback=self.on_error, priority=PRODUCT_PRIORITY, cb_kwargs={"canonical": canonical}
        )

    def _budget_left(self) -> bool:
        return len(self._products) < self.max_pages

    def parse_listing(self, response: Response) -> Iterator[Request]:
        if not isinstance(response, TextResponse):
            log.warning("listing %s is not a text page (%s); not followed", response.url, response.headers.get("Content-Type"))
            return
        links = cafe24.listing_links(response)
        for url in links.products:
            canonical = cafe24.canonical_product_url(url)
            if canonical in self._products or not self._budget_left():
                continue
            yield self._product_request(url, canonical)
        if not self._budget_left() or response.meta.get("depth", 0) >= self.max_depth:
            return
        for url in links.listings:
            if urlsplit(url).netloc.lower() == self.host:
                yield Request(url, callback=self.parse_listing, errback=self.on_error)

    def parse_product(self, response: Response, canonical: str) -> Iterator[ProductPageItem | PageFailureItem]:
        if not isinstance(response, TextResponse):
            yield self._failure(response.url, f"not an HTML page: {response.headers.get('Content-Type')!r}")
            return
        data = cafe24.extract_product(response)
        images = [ImageRef(url, "product", i) for i, url in enumerate(data["product_images"])]
        images += [ImageRef(url, "detail", i) for i, url in enumerate(data["detail_images"])]
        if not data["detail_images"]:
            log.info("no detail images on %s", response.url)
        yield ProductPageItem(
            url=canonical,
            shop=self.shop,
            platform=data["platform"],
            title=data["title"],
            price=data["price"],
            seller=data["seller"],
            images=images,
            target_id=self.target_id,
            run_id=self.run_id,
            seen=self.seen,
            fetched_url=response.url,
            etag=_header(response, b"ETag"),
            last_modified=_header(response, b"Last-Modified"),
            content_sha256=hashlib.sha256(response.body).hexdigest(),
        )

    def on_error(self, failure: Failure) -> Iterator[PageFailureItem]:
        request = failure.request
        reason = failure_reason(failure)
        log.warning("page %s not fetched: %s", request.url, reason)
        yield self._failure(request.url, reason)

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
