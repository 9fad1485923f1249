"""Evidence stage: full-page screenshots of the pages where a client's open findings were seen in a run.

Runs after matching and before the report (which shows each reported page's newest screenshot).
The browser work is :func:`crawler.screenshot.capture` (Chromium in a child process); this module
only decides which pages need a shot. Idempotent: a page whose newest screenshot was taken after
the run started, of the page content the run crawled, is not shot again, so a retried task (or a
second client whose findings share a page) does not re-shoot.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.db import Client, Database, Finding, FindingSighting, Page, Run, Screenshot
from pipeline.findings import SUPPRESSED
from pipeline.repo import get_client, record_skip, set_run_stats
from pipeline.review import apply_allowlist

log = logging.getLogger(__name__)

#: Skips of this stage share the screenshot function's stage name, so a report shows them together.
SKIP_STAGE = "screenshot"
HTTP_SCHEMES = ("http", "https")

Capture = Callable[..., dict[str, int]]


def capture_evidence(settings: Settings, run_id: int, client_slug: str, *, capture: Capture | None = None) -> dict:
    """Screenshot the pages that carry the client's open findings seen in run ``run_id``.

    Counts (kept on the run under ``evidence:<client>``): ``pages`` with such findings,
    ``already_shot`` (shot since the run started, same page content), ``not_http`` (not an http(s)
    URL: a skip), ``requested`` from the browser, and its ``captured``, ``new_files`` and ``failed``.
    With ``settings.screenshots`` off nothing is shot and ``enabled`` is false. A browser that
    cannot run at all is recorded as a skip and logged; the report is rendered without screenshots.
    ``capture`` replaces :func:`crawler.screenshot.capture` (same signature).
    """
    counts: dict = {"enabled": settings.screenshots, "pages": 0, "already_shot": 0, "not_http": 0,
                    "requested": 0, "captured": 0, "new_files": 0, "failed": 0}
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LookupError(f"no run with id {run_id}")
            client = get_client(s, client_slug)
            if not settings.screenshots:
                log.info("%s, run %d: screenshots are switched off (COPYWATCH_SCREENSHOTS)", client_slug, run_id)
                set_run_stats(s, run_id, f"evidence:{client_slug}", counts)
                return counts
            # Allowlisted sellers' findings are authorised before the report; do it first so they are not shot.
            apply_allowlist(s, client)
            pages = evidence_pages(s, client, run_id, _threshold(settings, client))
            counts["pages"] = len(pages)
            todo: dict[int, str] = {}
            for page in pages:
                if urlsplit(page.url).scheme.lower() not in HTTP_SCHEMES:
                    record_skip(s, run_id, SKIP_STAGE, page.url, "not an http(s) URL: no screenshot taken")
                    counts["not_http"] += 1
                elif shot_since(s, page, run):
                    counts["already_shot"] += 1
                else:
                    todo[page.id] = page.url
        counts["requested"] = len(todo)
        log.info("%s, run %d: %d pages with findings, %d to screenshot (%d already shot in this run, %d not http(s))",
                 client_slug, run_id, counts["pages"], len(todo), counts["already_shot"], counts["not_http"])
        if todo:
            counts.update(_shoot(settings, db, run_id, todo, capture))
        log.info("%s, run %d: %d screenshots taken, %d failed", client_slug, run_id, counts["captured"], counts["failed"])
        with db.session() as s:
            set_run_stats(s, run_id, f"evidence:{client_slug}", counts)
    finally:
        db.dispose()
    return counts


def evidence_pages(s: Session, client: Client, run_id: int, threshold: float) -> list[Page]:
    """Pages on which the run saw at least one of the client's open findings at or above the threshold, by id."""
    page_ids = (
        select(FindingSighting.page_id)
        .join(Finding, Finding.id == FindingSighting.finding_id)
        .where(
            FindingSighting.run_id == run_id,
            Finding.client_id == client.id,
            Finding.status.not_in(SUPPRESSED),
            Finding.score >= threshold,
        )
    )
    return list(s.scalars(select(Page).where(Page.id.in_(page_ids)).order_by(Page.id)))


def shot_since(s: Session, page: Page, run: Run) -> bool:
    """Whether the page's newest screenshot was taken after the run started, of the content the run crawled."""
    shot = s.scalar(
        select(Screenshot).where(Screenshot.page_id == page.id).order_by(Screenshot.captured_at.desc(), Screenshot.id.desc()).limit(1)
    )
    return shot is not None and shot.captured_at >= run.started_at and shot.page_sha256 == page.content_sha256


def _shoot(settings: Settings, db: Database, run_id: int, pages: dict[int, str], capture: Capture | None) -> dict[str, int]:
    """Shoot ``pages`` (id: URL); if the browser cannot run at all, each page becomes a skip and the run goes on."""
    if capture is None:
        from crawler.screenshot import capture
    try:
        got = capture(settings, sorted(pages), run_id=run_id)
    except Exception as e:  # noqa: BLE001 (any failure of the child process: the report says why, the run goes on)
        log.exception("screenshots of %d pages failed", len(pages))
        reason = f"browser failed: {type(e).__name__}: {str(e)[:500]}"
        with db.session() as s:
            for url in pages.values():
                record_skip(s, run_id, SKIP_STAGE, url, reason)
        return {"captured": 0, "new_files": 0, "failed": len(pages)}
    return {k: int(got.get(k, 0)) for k in ("captured", "new_files", "failed")}


def _threshold(settings: Settings, client: Client) -> float:
    return client.threshold if client.threshold is not None else settings.threshold
