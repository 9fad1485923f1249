"""Repository: the idempotent writes every stage shares (UPSERT-style get-or-create helpers)."""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import Client, CrawlTarget, GalleryImage, Image, Page, PageImage, Run, Skip

log = logging.getLogger(__name__)

#: Runs are dated in the shops' and clients' time zone.
SEOUL = ZoneInfo("Asia/Seoul")
#: Stages whose per-part counts (``<stage>:<part>``) are also kept summed under ``<stage>``.
SUMMED_STAGES = ("crawl", "embed")


def run_date(run: Run) -> date:
    """The calendar day (Asia/Seoul) a run's results are dated with: its data interval's end."""
    return run.interval_end.replace(tzinfo=timezone.utc).astimezone(SEOUL).date()


def utcnow() -> datetime:
    """Wall-clock time for audit columns only (never part of a run's results)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def get_client(s: Session, slug: str) -> Client:
    client = s.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        raise LookupError(f"no client {slug!r}: add it with `copywatch client add {slug} --name NAME`")
    return client


def upsert_client(s: Session, slug: str, name: str, language: str = "ko", threshold: float | None = None) -> Client:
    client = s.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        client = Client(slug=slug, name=name, language=language, threshold=threshold, created_at=utcnow())
        s.add(client)
    else:
        client.name, client.language = name, language
        if threshold is not None:
            client.threshold = threshold
    s.flush()
    return client


def upsert_target(s: Session, name: str, start_url: str, platform: str = "cafe24", max_pages: int = 500, max_depth: int = 4) -> CrawlTarget:
    t = s.scalar(select(CrawlTarget).where(CrawlTarget.name == name))
    if t is None:
        t = CrawlTarget(name=name, start_url=start_url, platform=platform, max_pages=max_pages, max_depth=max_depth, created_at=utcnow())
        s.add(t)
    else:
        t.start_url, t.platform, t.max_pages, t.max_depth = start_url, platform, max_pages, max_depth
    s.flush()
    return t


def upsert_run(s: Session, kind: str, interval_start: datetime, interval_end: datetime) -> Run:
    """The run for this kind and data interval; a re-run reuses it."""
    run = s.scalar(select(Run).where(Run.kind == kind, Run.interval_start == interval_start))
    if run is None:
        run = Run(kind=kind, interval_start=interval_start, interval_end=interval_end, status="running", started_at=utcnow(), stats={})
        s.add(run)
    else:
        run.status, run.started_at, run.finished_at = "running", utcnow(), None
    s.flush()
    return run


def set_run_stats(s: Session, run_id: int, stage: str, counts: dict[str, Any]) -> None:
    """Replace one stage's counts (a retried stage overwrites, never adds).

    Per-target crawl counts (stage ``crawl:<target>``) are also summed into ``crawl``, and
    per-batch embedding counts (``embed:<first image id>``) into ``embed``.
    """
    run = s.get(Run, run_id)
    stats = dict(run.stats or {})
    stats[stage] = counts
    prefix = stage.split(":", 1)[0]
    if ":" in stage and prefix in SUMMED_STAGES:
        total: dict[str, Any] = {}
        for key, part in stats.items():
            if key.startswith(prefix + ":"):
                for k, v in part.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        total[k] = total.get(k, 0) + v
        stats[prefix] = total
    run.stats = stats


def record_skip(s: Session, run_id: int | None, stage: str, subject: str, reason: str) -> None:
    """Record something a stage could not use, once per (run, stage, subject)."""
    row = s.scalar(select(Skip).where(Skip.run_id == run_id, Skip.stage == stage, Skip.subject == subject))
    if row is None:
        s.add(Skip(run_id=run_id, stage=stage, subject=subject, reason=reason, created_at=utcnow()))
    else:
        row.reason = reason
    log.info("skipped %s %s: %s", stage, subject, reason)


def upsert_image(
    s: Session,
    sha256: str,
    *,
    size_bytes: int,
    seen: date,
    mime: str | None = None,
    width: int | None = None,
    height: int | None = None,
    status: str = "ok",
    reason: str | None = None,
) -> Image:
    img = s.scalar(select(Image).where(Image.sha256 == sha256))
    if img is None:
        img = Image(sha256=sha256, size_bytes=size_bytes, mime=mime, width=width, height=height, status=status, reason=reason, first_seen=seen)
        s.add(img)
    else:
        img.first_seen = min(img.first_seen, seen)
        if width:
            img.width, img.height = width, height
        img.status, img.reason = status, reason
    s.flush()
    return img


def upsert_page(
    s: Session,
    url: str,
    *,
    seen: date,
    run_id: int | None,
    target_id: int | None,
    platform: str,
    shop: str,
    title: str | None = None,
    price: str | None = None,
    seller: dict | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    content_sha256: str | None = None,
) -> Page:
    page = s.scalar(select(Page).where(Page.url == url))
    if page is None:
        page = Page(url=url, first_seen=seen, last_seen=seen)
        s.add(page)
    page.first_seen = min(page.first_seen, seen)
    page.last_seen = max(page.last_seen, seen)
    page.target_id, page.platform, page.shop = target_id, platform, shop
    page.title, page.price, page.seller = title, price, dict(seller or {})
    page.etag, page.last_modified, page.content_sha256 = etag, last_modified, content_sha256
    page.last_run_id = run_id
    s.flush()
    return page


def link_page_image(s: Session, page_id: int, image_id: int, role: str, position: int, url: str, run_id: int | None) -> PageImage:
    """Where an image sits on a page; a page whose image changed is updated in place."""
    link = s.scalar(select(PageImage).where(PageImage.page_id == page_id, PageImage.role == role, PageImage.position == position))
    if link is None:
        link = PageImage(page_id=page_id, role=role, position=position, image_id=image_id, url=url, last_run_id=run_id)
        s.add(link)
    else:
        link.image_id, link.url, link.last_run_id = image_id, url, run_id
    s.flush()
    return link


def add_gallery_image(s: Session, client: Client, sha256: str, label: str, width: int, height: int) -> tuple[GalleryImage, bool]:
    """Add a protected image to a client's gallery; the same bytes twice are stored once."""
    row = s.scalar(select(GalleryImage).where(GalleryImage.client_id == client.id, GalleryImage.sha256 == sha256))
    if row is not None:
        return row, False
    row = GalleryImage(client_id=client.id, sha256=sha256, label=label, width=width, height=height, added_at=utcnow())
    s.add(row)
    s.flush()
    return row, True
