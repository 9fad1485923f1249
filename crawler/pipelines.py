"""Item pipelines: download original image bytes into the content store, then write rows to the database."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileException, FileInfoOrError, MediaPipeline
from scrapy.statscollectors import StatsCollector
from scrapy.utils.response import response_status_message
from sqlalchemy import select
from twisted.python.failure import Failure

from crawler.items import FileResult, PageFailureItem, PageUnchangedItem, ProductPageItem
from crawler.middlewares import META_CONDITIONAL, META_IMAGE
from pipeline.db import Database, Image, ImageFetch, Page, PageImage
from pipeline.images import BadImage, decode
from pipeline.repo import link_page_image, record_skip, upsert_image, upsert_page, utcnow
from pipeline.store import ContentStore

log = logging.getLogger(__name__)

#: Stage names of the skip rows this crawl writes.
STAGE_PAGE, STAGE_DOWNLOAD, STAGE_DECODE = "crawl", "download", "decode"
#: Column sizes of crawled text (it is data: truncated, never used in paths).
_MAX_PRICE, _MAX_SHOP, _MAX_SELLER_VALUE = 64, 200, 500


class OriginalFilesPipeline(FilesPipeline):
    """Scrapy's files pipeline, storing each file's original bytes once under its SHA-256.

    ``FILES_STORE`` is the content-store root; the path of a file is the store's own layout
    for the SHA-256 of the response body. Each URL's outcome goes into ``item.files`` as a
    :class:`FileResult` (the sha256, or the reason of the failure: ``HTTP 404 Not Found``, ...).
    """

    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        if "://" in str(store_uri) and not str(store_uri).startswith("file://"):
            raise NotConfigured(f"{type(self).__name__} needs a local FILES_STORE, got {store_uri!r}")
        super().__init__(store_uri, crawler=crawler)
        self.content_store = ContentStore(str(store_uri).removeprefix("file://"))

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        if not isinstance(item, ProductPageItem):
            return []
        return [Request(url, callback=NO_CALLBACK, meta={META_IMAGE: True}) for url in item.file_urls]

    def media_to_download(self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None) -> None:
        """Always download: the same URL may serve new bytes; the store deduplicates by content."""
        return None

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        if response is None:
            raise ValueError("the path of an original file derives from its bytes: a response is needed")
        digest = hashlib.sha256(response.body).hexdigest()
        return self.content_store.path(digest).relative_to(self.content_store.root).as_posix()

    async def media_downloaded(
        self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> dict[str, Any]:
        """Store a 200 response's bytes; a 304 to a conditional request is the stored file, unchanged;
        an error status or empty body is a failed result with its reason."""
        validators = {"etag": _header(response, b"ETag"), "last_modified": _header(response, b"Last-Modified")}
        stored = request.meta.get(META_CONDITIONAL)
        if response.status == 304 and stored:
            self.crawler.stats.inc_value("copywatch/images_unchanged")
            return {"url": request.url, "path": "", "checksum": stored, "status": "unchanged", "size": 0, "mime": None, **validators}
        reason = _unusable_response(response)
        if reason is not None:
            log.warning("image %s not stored: %s", request.url, reason)
            return {"url": request.url, "path": "", "checksum": None, "status": "failed", "reason": reason}
        result = dict(await super().media_downloaded(response, request, info, item=item))
        result["size"] = len(response.body)
        content_type = response.headers.get(b"Content-Type")
        result["mime"] = content_type.decode("latin-1").split(";")[0].strip()[:64] if content_type else None
        result.update(validators)
        return result

    def file_downloaded(self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None) -> str:
        """Store the original bytes atomically; the checksum reported is their SHA-256."""
        digest, new = self.content_store.put(response.body)
        stats = self.crawler.stats
        stats.inc_value("copywatch/image_bytes", len(response.body))
        if new:
            stats.inc_value("copywatch/files_new")
        return digest

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> None:
        """Raise an exception whose message is the recorded reason (robots.txt, timeout, DNS, ...)."""
        if failure.check(IgnoreRequest):
            log.info("image %s not fetched: %s", request.url, failure.value)
            super().media_failed(failure, request, info)  # raises; Scrapy logs filtered requests at DEBUG
        reason = f"{type(failure.value).__name__}: {failure.value}"
        log.warning("image %s not fetched: %s", request.url, reason)
        raise FileException(reason) from failure.value

    def item_completed(self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        if not isinstance(item, ProductPageItem):
            return item
        item.files = [_file_result(url, ok, value) for url, (ok, value) in zip(item.file_urls, results)]
        failed = sum(1 for f in item.files if not f.ok)
        if failed:
            self.crawler.stats.inc_value("copywatch/image_failures", failed)
        return item


def _unusable_response(response: Response) -> str | None:
    if response.status != 200:
        return f"HTTP {response_status_message(response.status)}"
    if not response.body:
        return "empty response body"
    return None


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1")[:200] if value else None


def _file_result(url: str, ok: bool, value: Any) -> FileResult:
    if ok and value.get("status") == "failed":
        return FileResult(url=url, ok=False, reason=value["reason"])
    if ok:
        return FileResult(
            url=url, ok=True, sha256=value["checksum"], size=value.get("size", 0), mime=value.get("mime"),
            etag=value.get("etag"), last_modified=value.get("last_modified"), unchanged=value.get("status") == "unchanged",
        )
    reason = str(value.value) if isinstance(value, Failure) else str(value)
    return FileResult(url=url, ok=False, reason=reason or "download failed")


@dataclass(frozen=True)
class ImageFacts:
    """What the database keeps about a stored file: size, dimensions, and whether it decodes."""

    size: int
    width: int | None
    height: int | None
    status: str
    reason: str | None


class StorePipeline:
    """Writes pages, images, page-image links and skips; every write is an idempotent upsert.

    Database work runs on one worker thread, in item order, so the crawl's event loop is never
    blocked by decoding or SQL and two items never race on the same image row.
    """

    def __init__(self, database_url: str, store_root: str, max_pixels: int, stats: StatsCollector) -> None:
        if not database_url:
            raise NotConfigured("COPYWATCH_DATABASE_URL is not set")
        self.database_url = database_url
        self.store = ContentStore(store_root)
        self.max_pixels = max_pixels
        self.stats = stats
        self.db: Database | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._facts: dict[str, ImageFacts] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StorePipeline":
        s = crawler.settings
        return cls(
            s.get("COPYWATCH_DATABASE_URL"),
            str(s.get("FILES_STORE")).removeprefix("file://"),
            s.getint("COPYWATCH_MAX_IMAGE_PIXELS", 80_000_000),
            crawler.stats,
        )

    def open_spider(self) -> None:
        self.db = Database(self.database_url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copywatch-store")

    def close_spider(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.db is not None:
            self.db.dispose()

    async def process_item(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.write, item)
        return item

    def write(self, item: Any) -> None:
        """Write one item (runs on the store thread)."""
        if isinstance(item, PageFailureItem):
            self._write_failure(item)
        elif isinstance(item, PageUnchangedItem):
            self._write_unchanged(item)
        elif isinstance(item, ProductPageItem):
            self._write_page(item)
        else:
            log.warning("unknown item type %s ignored", type(item).__name__)

    def _write_failure(self, item: PageFailureItem) -> None:
        with self.db.session() as s:
            record_skip(s, item.run_id, STAGE_PAGE, item.url, item.reason)
        self.stats.inc_value("copywatch/page_failures")

    def _write_unchanged(self, item: PageUnchangedItem) -> None:
        """A 304 page: seen again in this run, with the images it had (nothing downloaded or decoded)."""
        with self.db.session() as s:
            page = s.scalar(select(Page).where(Page.url == item.url))
            if page is None:
                record_skip(s, item.run_id, STAGE_PAGE, item.url, "304 Not Modified for a page that is not stored")
                self.stats.inc_value("copywatch/page_failures")
                return
            page.first_seen, page.last_seen = min(page.first_seen, item.seen), max(page.last_seen, item.seen)
            page.last_run_id = item.run_id
            links = list(s.scalars(select(PageImage).where(PageImage.page_id == page.id)))
            for link in links:
                link.last_run_id = item.run_id
        self.stats.inc_value("copywatch/pages")
        self.stats.inc_value("copywatch/pages_unchanged")
        self.stats.inc_value("copywatch/images", len(links))
        self.stats.inc_value("copywatch/images_relinked", len(links))

    def _write_page(self, item: ProductPageItem) -> None:
        results = {f.url: f for f in item.files}
        facts = {r.sha256: self._image_facts(r.sha256) for r in results.values() if r.ok}
        with self.db.session() as s:
            page = upsert_page(
                s,
                item.url,
                seen=item.seen,
                run_id=item.run_id,
                target_id=item.target_id,
                platform=item.platform,
                shop=item.shop[:_MAX_SHOP],
                title=item.title,
                price=item.price[:_MAX_PRICE] if item.price else None,
                seller={k: str(v)[:_MAX_SELLER_VALUE] for k, v in item.seller.items()},
                etag=item.etag,
                last_modified=item.last_modified,
                content_sha256=item.content_sha256,
            )
            for ref in item.images:
                result = results.get(ref.url) or FileResult(url=ref.url, ok=False, reason="not downloaded")
                if not result.ok:
                    record_skip(s, item.run_id, STAGE_DOWNLOAD, ref.url, result.reason or "download failed")
                    continue
                fact = facts[result.sha256]
                image = upsert_image(
                    s, result.sha256, size_bytes=fact.size, seen=item.seen, mime=result.mime,
                    width=fact.width, height=fact.height, status=fact.status, reason=fact.reason,
                )
                if fact.status != "ok":
                    record_skip(s, item.run_id, STAGE_DECODE, ref.url, f"{fact.reason} (sha256 {result.sha256})")
                link_page_image(s, page.id, image.id, ref.role, ref.position, ref.url, item.run_id)
            for result in results.values():
                if result.ok and not result.unchanged and (result.etag or result.last_modified):
                    _upsert_fetch(s, result)
        self._count(item, results, facts)

    def _count(self, item: ProductPageItem, results: dict[str, FileResult], facts: dict[str, ImageFacts]) -> None:
        self.stats.inc_value("copywatch/pages")
        stored = [results[ref.url] for ref in item.images if ref.url in results and results[ref.url].ok]
        self.stats.inc_value("copywatch/images", len(stored))
        self.stats.inc_value("copywatch/images_bad", sum(1 for r in stored if facts[r.sha256].status != "ok"))

    def _image_facts(self, sha256: str) -> ImageFacts:
        """Size and dimensions of a stored file: from the database if known, else by decoding it once."""
        if sha256 in self._facts:
            return self._facts[sha256]
        with self.db.session() as s:
            row = s.scalar(select(Image).where(Image.sha256 == sha256))
            known = ImageFacts(row.size_bytes, row.width, row.height, row.status, row.reason) if row is not None else None
        fact = known if known is not None and (known.width or known.status != "ok") else self._decode(sha256)
        self._facts[sha256] = fact
        return fact

    def _decode(self, sha256: str) -> ImageFacts:
        data = self.store.read(sha256)
        try:
            im = decode(data, max_pixels=self.max_pixels)
        except BadImage as e:
            log.warning("image %s is unusable: %s", sha256, e.reason)
            return ImageFacts(len(data), None, None, "bad", e.reason)
        return ImageFacts(len(data), im.width, im.height, "ok", None)


def _upsert_fetch(s: Any, result: FileResult) -> None:
    """Keep an image URL's validators and the SHA-256 of its bytes for the next conditional request."""
    row = s.scalar(select(ImageFetch).where(ImageFetch.url == result.url))
    if row is None:
        row = ImageFetch(url=result.url, sha256=result.sha256, fetched_at=utcnow())
        s.add(row)
    row.etag, row.last_modified, row.sha256, row.fetched_at = result.etag, result.last_modified, result.sha256, utcnow()
