"""Offline tests of the conditional-requests middleware: which requests get validators, and when not."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from scrapy.http import Request, Response
from scrapy.utils.test import get_crawler

from crawler.middlewares import META_CONDITIONAL, META_IMAGE, META_PAGE, ConditionalRequestsMiddleware
from pipeline.db import Database, ImageFetch
from pipeline.repo import upsert_page, utcnow
from pipeline.store import ContentStore


@pytest.fixture()
def middleware(tmp_path: Path) -> tuple[ConditionalRequestsMiddleware, Database, ContentStore]:
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    crawler = get_crawler(settings_dict={"COPYWATCH_DATABASE_URL": url, "FILES_STORE": str(tmp_path / "store")})
    crawler.stats.open_spider()
    mw = ConditionalRequestsMiddleware.from_crawler(crawler)
    db = Database(url)
    yield mw, db, ContentStore(tmp_path / "store")
    mw.spider_closed()
    db.dispose()


def test_image_gets_validators_only_while_its_bytes_are_stored(middleware) -> None:
    mw, db, store = middleware
    digest, _ = store.put(b"image bytes")
    with db.session() as s:
        s.add(ImageFetch(url="http://shop/a.jpg", etag='"abc"', last_modified="Sat, 01 Jun 2024 00:00:00 GMT", sha256=digest, fetched_at=utcnow()))
        s.add(ImageFetch(url="http://shop/gone.jpg", etag='"def"', last_modified=None, sha256="0" * 64, fetched_at=utcnow()))
    kept = Request("http://shop/a.jpg", meta={META_IMAGE: True})
    mw.process_request(kept)
    assert kept.headers["If-None-Match"] == b'"abc"' and kept.headers["If-Modified-Since"] == b"Sat, 01 Jun 2024 00:00:00 GMT"
    assert kept.meta[META_CONDITIONAL] == digest
    gone = Request("http://shop/gone.jpg", meta={META_IMAGE: True})
    mw.process_request(gone)
    assert "If-None-Match" not in gone.headers and META_CONDITIONAL not in gone.meta
    unknown = Request("http://shop/new.jpg", meta={META_IMAGE: True})
    mw.process_request(unknown)
    assert "If-None-Match" not in unknown.headers
    mw.process_response(kept, Response("http://shop/a.jpg", status=304))
    assert mw.stats.get_value("copywatch/not_modified") == 1 and mw.stats.get_value("copywatch/conditional_requests") == 1


def test_pages_use_the_stored_validators_and_browser_requests_never(middleware) -> None:
    mw, db, _ = middleware
    with db.session() as s:
        upsert_page(s, "http://shop/p?id=1", seen=date(2024, 6, 2), run_id=None, target_id=None, platform="generic", shop="s",
                    etag='"page"', last_modified=None)
    page = Request("http://shop/p?id=1&ref=list", meta={META_PAGE: "http://shop/p?id=1"})
    mw.process_request(page)
    assert page.headers["If-None-Match"] == b'"page"' and "If-Modified-Since" not in page.headers
    rendered = Request("http://shop/p?id=1", meta={META_PAGE: "http://shop/p?id=1", "playwright": True})
    mw.process_request(rendered)
    assert "If-None-Match" not in rendered.headers
    listing = Request("http://shop/")
    mw.process_request(listing)
    assert "If-None-Match" not in listing.headers


def test_switched_off_by_setting(tmp_path: Path) -> None:
    from scrapy.exceptions import NotConfigured

    crawler = get_crawler(settings_dict={"COPYWATCH_CONDITIONAL_REQUESTS": False, "COPYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    with pytest.raises(NotConfigured):
        ConditionalRequestsMiddleware.from_crawler(crawler)
