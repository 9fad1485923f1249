"""Full-page screenshots of product pages as evidence, stored content-addressed with their capture time."""
from __future__ import annotations

import io
import logging
import multiprocessing
from collections.abc import Iterable

from PIL import Image as PILImage
from sqlalchemy import select

from pipeline.config import Settings
from pipeline.db import Database, Page, Screenshot
from pipeline.repo import record_skip, utcnow
from pipeline.store import ContentStore

log = logging.getLogger(__name__)

STAGE = "screenshot"


def capture(settings: Settings, page_ids: Iterable[int]) -> dict[str, int]:
    """Screenshot each page (``pages.id``) in Chromium, in a child process; return counts.

    Counts: ``pages`` asked, ``captured``, ``new_files`` (bytes not yet in the store), ``failed``
    (recorded as skips of stage ``screenshot`` with the reason). A page shot twice with the same
    bytes keeps one row; a changed page gets a new row beside the old one.
    """
    ids = sorted(set(page_ids))
    if not ids:
        return {"pages": 0, "captured": 0, "new_files": 0, "failed": 0}
    # Playwright's sync API cannot run inside an event loop (a crawl, an Airflow task's): use a fresh process.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(capture_here, (settings.database_url, str(settings.store_dir), settings.user_agent, ids))


def capture_here(database_url: str, store_root: str, user_agent: str, page_ids: list[int]) -> dict[str, int]:
    """:func:`capture` in this process (no asyncio loop may be running here)."""
    from playwright.sync_api import Error as PlaywrightError

    from crawler.browser import browser_page, load

    store = ContentStore(store_root)
    db = Database(database_url)
    counts = {"pages": len(page_ids), "captured": 0, "new_files": 0, "failed": 0}
    try:
        with db.session() as s:
            pages = list(s.execute(select(Page.id, Page.url).where(Page.id.in_(page_ids)).order_by(Page.id)).tuples())
        missing = set(page_ids) - {pid for pid, _ in pages}
        if missing:
            raise LookupError(f"no pages with ids {sorted(missing)}")
        with browser_page(user_agent) as page:
            for page_id, url in pages:
                try:
                    load(page, url)
                    png = page.screenshot(full_page=True, type="png")
                except (PlaywrightError, RuntimeError) as e:
                    log.warning("screenshot of %s failed: %s", url, e)
                    with db.session() as s:
                        record_skip(s, None, STAGE, url, f"{type(e).__name__}: {str(e)[:500]}")
                    counts["failed"] += 1
                    continue
                digest, new = store.put(png)
                width, height = PILImage.open(io.BytesIO(png)).size
                with db.session() as s:
                    row = s.scalar(select(Screenshot).where(Screenshot.page_id == page_id, Screenshot.sha256 == digest))
                    if row is None:
                        s.add(Screenshot(page_id=page_id, sha256=digest, url=url, width=width, height=height, captured_at=utcnow()))
                    else:
                        row.captured_at = utcnow()
                counts["captured"] += 1
                counts["new_files"] += int(new)
                log.info("screenshot of %s: %s (%dx%d)", url, digest, width, height)
    finally:
        db.dispose()
    return counts
