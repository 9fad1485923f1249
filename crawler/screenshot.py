"""Full-page screenshots of product pages as evidence, stored content-addressed with their capture time."""
from __future__ import annotations

import io
import logging
import multiprocessing
from collections.abc import Iterable

from PIL import Image as PILImage
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from pipeline.config import Settings
from pipeline.db import Database, Page, Screenshot, Skip
from pipeline.repo import record_skip, utcnow
from pipeline.store import ContentStore

log = logging.getLogger(__name__)

STAGE = "screenshot"


def capture(settings: Settings, page_ids: Iterable[int], run_id: int | None = None) -> dict[str, int]:
    """Screenshot each page (``pages.id``) in Chromium, in a child process; return counts.

    Counts: ``pages`` asked, ``captured``, ``new_files`` (bytes not yet in the store), ``failed``
    (recorded as skips of stage ``screenshot`` with the reason, under ``run_id`` when given). A page
    shot twice with the same bytes keeps one row; a changed page gets a new row beside the old one.
    Each row keeps the page's ``content_sha256`` at capture time (``page_sha256``).
    """
    ids = sorted(set(page_ids))
    if not ids:
        return {"pages": 0, "captured": 0, "new_files": 0, "failed": 0}
    # Playwright's sync API cannot run inside an event loop (a crawl, an Airflow task's): use a fresh process.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(capture_here, (settings.database_url, str(settings.store_dir), settings.user_agent, ids, run_id))


def capture_here(database_url: str, store_root: str, user_agent: str, page_ids: list[int], run_id: int | None = None) -> dict[str, int]:
    """:func:`capture` in this process (no asyncio loop may be running here)."""
    from playwright.sync_api import Error as PlaywrightError

    from crawler.browser import browser_page, load

    store = ContentStore(store_root)
    db = Database(database_url)
    counts = {"pages": len(page_ids), "captured": 0, "new_files": 0, "failed": 0}
    try:
        with db.session() as s:
            pages = list(s.execute(select(Page.id, Page.url, Page.content_sha256).where(Page.id.in_(page_ids)).order_by(Page.id)).tuples())
        missing = set(page_ids) - {pid for pid, _, _ in pages}
        if missing:
            raise LookupError(f"no pages with ids {sorted(missing)}")
        with browser_page(user_agent) as page:
            for page_id, url, page_sha256 in pages:
                try:
                    load(page, url)
                    png = page.screenshot(full_page=True, type="png")
                except (PlaywrightError, RuntimeError) as e:
                    log.warning("screenshot of %s failed: %s", url, e)
                    with db.session() as s:
                        record_skip(s, run_id, STAGE, url, f"{type(e).__name__}: {str(e)[:500]}")
                    counts["failed"] += 1
                    continue
                digest, new = store.put(png)
                width, height = PILImage.open(io.BytesIO(png)).size
                _save_row(db, page_id, digest, url, width, height, page_sha256, run_id)
                counts["captured"] += 1
                counts["new_files"] += int(new)
                log.info("screenshot of %s: %s (%dx%d)", url, digest, width, height)
    finally:
        db.dispose()
    return counts


def _save_row(db: Database, page_id: int, digest: str, url: str, width: int, height: int, page_sha256: str | None, run_id: int | None) -> None:
    """Add the (page, PNG) row, or refresh its capture time when these bytes were shot before; drop
    the skip an earlier failed try of run ``run_id`` recorded for the page.

    Two processes shooting the same page at once (one client's evidence task beside another's)
    can both find no row; the one whose insert loses the race refreshes the winner's row.
    """
    for attempt in (1, 2):
        try:
            with db.session() as s:
                row = s.scalar(select(Screenshot).where(Screenshot.page_id == page_id, Screenshot.sha256 == digest))
                if row is None:
                    s.add(Screenshot(page_id=page_id, sha256=digest, url=url, width=width, height=height, captured_at=utcnow(), page_sha256=page_sha256))
                else:
                    row.captured_at, row.page_sha256 = utcnow(), page_sha256
                if run_id is not None:
                    s.execute(delete(Skip).where(Skip.run_id == run_id, Skip.stage == STAGE, Skip.subject == url))
            return
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("screenshot row of page %d was added meanwhile; refreshing it", page_id)
