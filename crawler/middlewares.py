"""Downloader middleware: conditional requests (ETag / Last-Modified) for pages and images already stored."""
from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from sqlalchemy import select

from pipeline.db import Database, ImageFetch, Page
from pipeline.store import ContentStore

log = logging.getLogger(__name__)

#: Request meta keys: a product page's canonical URL, or an image download.
META_PAGE = "copywatch_page"
META_IMAGE = "copywatch_image"
#: Set on a request that was sent with validators: the SHA-256 of the stored image (images) or True (pages).
META_CONDITIONAL = "copywatch_conditional"


class ConditionalRequestsMiddleware:
    """Adds ``If-None-Match`` / ``If-Modified-Since`` from what the database stored for the URL.

    Pages: the validators of the stored page (by canonical URL). Images: those of the last fetch of
    the URL, and only while the bytes it gave are still in the content store. A ``304`` answer
    reaches the spider (pages) or the files pipeline (images) as "unchanged". Browser requests
    (Playwright) are never made conditional.
    """

    def __init__(self, database_url: str, store_root: str, crawler: Crawler) -> None:
        self.database_url = database_url
        self.store = ContentStore(store_root)
        self.stats = crawler.stats
        self.db: Database | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "ConditionalRequestsMiddleware":
        s = crawler.settings
        if not s.getbool("COPYWATCH_CONDITIONAL_REQUESTS", True):
            raise NotConfigured("COPYWATCH_CONDITIONAL_REQUESTS is off")
        if not s.get("COPYWATCH_DATABASE_URL"):
            raise NotConfigured("COPYWATCH_DATABASE_URL is not set")
        mw = cls(s.get("COPYWATCH_DATABASE_URL"), str(s.get("FILES_STORE")).removeprefix("file://"), crawler)
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    def _database(self) -> Database:
        if self.db is None:
            self.db = Database(self.database_url)
        return self.db

    def spider_closed(self) -> None:
        if self.db is not None:
            self.db.dispose()

    def process_request(self, request: Request) -> None:
        if request.meta.get("playwright") or "If-None-Match" in request.headers or "If-Modified-Since" in request.headers:
            return None
        if request.meta.get(META_IMAGE):
            validators = self._image_validators(request.url)
        elif request.meta.get(META_PAGE):
            validators = self._page_validators(request.meta[META_PAGE])
        else:
            return None
        if validators is None:
            return None
        etag, last_modified, marker = validators
        if etag:
            request.headers["If-None-Match"] = etag
        if last_modified:
            request.headers["If-Modified-Since"] = last_modified
        request.meta[META_CONDITIONAL] = marker
        self.stats.inc_value("copywatch/conditional_requests")
        return None

    def process_response(self, request: Request, response: Response) -> Response:
        if response.status == 304 and request.meta.get(META_CONDITIONAL):
            self.stats.inc_value("copywatch/not_modified")
        return response

    def _image_validators(self, url: str) -> tuple[str | None, str | None, Any] | None:
        with self._database().session() as s:
            row = s.scalar(select(ImageFetch).where(ImageFetch.url == url))
            if row is None or not (row.etag or row.last_modified) or not self.store.exists(row.sha256):
                return None
            return row.etag, row.last_modified, row.sha256

    def _page_validators(self, canonical: str) -> tuple[str | None, str | None, Any] | None:
        with self._database().session() as s:
            row = s.scalar(select(Page).where(Page.url == canonical))
            if row is None or not (row.etag or row.last_modified):
                return None
            return row.etag, row.last_modified, True
