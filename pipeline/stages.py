"""Stage functions of one monitoring run: the bodies that Airflow tasks and the CLI both call.

Each takes the settings and small ids, returns a small dict of counts, and is idempotent:
a retried or re-run stage leaves the same rows.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from sqlalchemy import select

from pipeline import images
from pipeline.config import Settings
from pipeline.db import Client, CrawlTarget, Database, GalleryImage, Image, Page, PageImage, Run
from pipeline.embed import Embedder, get_embedder
from pipeline.findings import upsert_finding
from pipeline.gallery import client_index
from pipeline.match import MatchParams, match_image
from pipeline.repo import get_client, record_skip, run_date, set_run_stats, upsert_image, upsert_run, utcnow
from pipeline.store import ContentStore
from pipeline.tilecache import cached, embed_image
from pipeline.tiling import QUERY_TILING

log = logging.getLogger(__name__)

def _naive_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


def open_run(settings: Settings, interval_start: datetime, interval_end: datetime, kind: str = "daily") -> int:
    """Create (or reopen, on a re-run) the run keyed by ``kind`` and its data interval."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            run = upsert_run(s, kind, _naive_utc(interval_start), _naive_utc(interval_end))
            log.info("run %d (%s) for %s .. %s", run.id, kind, run.interval_start, run.interval_end)
            return run.id
    finally:
        db.dispose()


def run_day(settings: Settings, run_id: int) -> date:
    """The date results of run ``run_id`` are recorded under (see :func:`run_date`)."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            return run_date(s.get(Run, run_id))
    finally:
        db.dispose()


def record_crawl(settings: Settings, run_id: int, target_id: int, counts: dict) -> dict:
    """Keep one target's crawl counts on the run (summed over targets under ``crawl``)."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            set_run_stats(s, run_id, f"crawl:{target_id}", counts)
    finally:
        db.dispose()
    return counts


def enabled_targets(settings: Settings) -> list[int]:
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            return list(s.scalars(select(CrawlTarget.id).where(CrawlTarget.enabled).order_by(CrawlTarget.id)))
    finally:
        db.dispose()


def client_slugs(settings: Settings) -> list[str]:
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            return list(s.scalars(select(Client.slug).order_by(Client.id)))
    finally:
        db.dispose()


def embed_run_images(settings: Settings, run_id: int, embedder: Embedder | None = None) -> dict[str, int]:
    """Tile and embed every image seen in this run that is not already cached."""
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    store = ContentStore(settings.store_dir)
    db = Database(settings.database_url)
    counts = {"images": 0, "embedded": 0, "cached": 0, "tiles": 0, "bad": 0}
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            rows = s.execute(
                select(Image).join(PageImage, PageImage.image_id == Image.id)
                .where(PageImage.last_run_id == run_id, Image.status == "ok").distinct().order_by(Image.id)
            ).scalars().all()
            for n, img in enumerate(rows, 1):
                counts["images"] += 1
                try:
                    im = images.decode(store.path(img.sha256), max_pixels=settings.max_image_pixels)
                except images.BadImage as e:
                    upsert_image(s, img.sha256, size_bytes=img.size_bytes, seen=run_date(run), status="bad", reason=e.reason)
                    record_skip(s, run_id, "embed", img.sha256, e.reason)
                    counts["bad"] += 1
                    continue
                tv, computed = embed_image(s, settings.home, img.sha256, im, QUERY_TILING, embedder)
                counts["embedded" if computed else "cached"] += 1
                counts["tiles"] += len(tv)
                if n % 20 == 0 or n == len(rows):
                    log.info("embedded %d/%d images (%d tiles so far)", n, len(rows), counts["tiles"])
            set_run_stats(s, run_id, "embed", counts)
    finally:
        db.dispose()
    return counts


def match_run(settings: Settings, run_id: int, client_slug: str, embedder: Embedder | None = None, params: MatchParams = MatchParams()) -> dict[str, int]:
    """Match every image seen in this run against one client's gallery; upsert its findings."""
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    store = ContentStore(settings.store_dir)
    db = Database(settings.database_url)
    counts = {"images": 0, "findings": 0, "new_findings": 0, "below_threshold": 0}
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            seen = run_date(run)
            client = get_client(s, client_slug)
            threshold = client.threshold if client.threshold is not None else settings.threshold
            index = client_index(s, settings, client, embedder)
            gallery = {g.id: g for g in s.scalars(select(GalleryImage).where(GalleryImage.client_id == client.id))}
            gallery_cache: dict[int, object] = {}

            def load_gallery(gid: int):
                if gid not in gallery_cache:
                    gallery_cache[gid] = images.decode(store.path(gallery[gid].sha256), max_pixels=settings.max_image_pixels)
                return gallery_cache[gid]

            links = s.execute(
                select(PageImage.page_id, Image).join(Image, Image.id == PageImage.image_id)
                .where(PageImage.last_run_id == run_id, Image.status == "ok").order_by(Image.id, PageImage.page_id)
            ).all()
            pages_of: dict[int, list[int]] = {}
            by_id: dict[int, Image] = {}
            for page_id, img in links:
                pages_of.setdefault(img.id, []).append(page_id)
                by_id[img.id] = img
            for n, (image_id, page_ids) in enumerate(pages_of.items(), 1):
                img = by_id[image_id]
                tv = cached(s, settings.home, img.sha256, QUERY_TILING, embedder)
                if tv is None:
                    record_skip(s, run_id, "match", img.sha256, "no tile vectors: the embed stage did not process this image")
                    continue
                counts["images"] += 1
                query_image = images.decode(store.path(img.sha256), max_pixels=settings.max_image_pixels)
                for m in match_image(query_image, tv, index, load_gallery, params):
                    if m.score < threshold:
                        counts["below_threshold"] += 1
                        continue
                    for page_id in sorted(set(page_ids)):
                        _, created = upsert_finding(s, client_id=client.id, image_id=image_id, page_id=page_id, run_id=run_id, seen=seen, match=m)
                        counts["new_findings"] += int(created)
                    counts["findings"] += 1
                if n % 20 == 0 or n == len(pages_of):
                    log.info("%s: matched %d/%d images, %d findings", client_slug, n, len(pages_of), counts["findings"])
            set_run_stats(s, run_id, f"match:{client_slug}", counts)
    finally:
        db.dispose()
    return counts


def close_run(settings: Settings, run_id: int, status: str = "success") -> dict:
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            run.status, run.finished_at = status, utcnow()
            return dict(run.stats or {})
    finally:
        db.dispose()
