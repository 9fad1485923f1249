"""Stage functions of one monitoring run: the bodies that Airflow tasks and the CLI both call.

Each takes the settings and small ids, returns a small dict of counts, and is idempotent:
a retried or re-run stage leaves the same rows.
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline import images
from pipeline.config import Settings
from pipeline.db import Client, CrawlTarget, Database, Finding, GalleryImage, Image, PageImage, Report, Run
from pipeline.embed import Embedder, get_embedder
from pipeline.findings import upsert_finding
from pipeline.gallery import client_gallery, client_index
from pipeline.match import Match, MatchParams, Query, checked_matches, copies, frequent_regions, rank_gallery, shows_region
from pipeline.verify import covered_share
from pipeline.parallel import cpu_workers, fork_map
from pipeline.runtime import tune_allocator
from pipeline.repo import get_client, record_skip, run_date, set_run_stats, upsert_image, upsert_run, utcnow
from pipeline.store import ContentStore
from pipeline.tilecache import CachedTiles, cached_tiles, embed_image
from pipeline.tiling import QUERY_TILING

log = logging.getLogger(__name__)

#: Test hook: when set to N, :func:`match_run` raises once N findings are committed (a task
#: killed mid-way); the idempotence test sets it, production never does.
FAIL_AFTER_FINDINGS_ENV = "COPYWATCH_TEST_FAIL_AFTER_FINDINGS"
#: Images per mapped embedding task of the daily DAG.
EMBED_BATCH_SIZE = 40

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


def embed_run_images(
    settings: Settings, run_id: int, embedder: Embedder | None = None, id_range: tuple[int, int] | None = None
) -> dict[str, int]:
    """Tile and embed every image seen in this run that is not already cached.

    With ``id_range`` (lo, hi), only images with lo <= id <= hi: one batch of :func:`embed_batches`,
    whose counts are kept under ``embed:<lo>`` (and summed into ``embed``).
    """
    tune_allocator()
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    store = ContentStore(settings.store_dir)
    db = Database(settings.database_url)
    counts = {"images": 0, "embedded": 0, "cached": 0, "tiles": 0, "bad": 0}
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            rows = s.execute(
                select(Image).join(PageImage, PageImage.image_id == Image.id)
                .where(Image.id.in_(_run_image_ids(s, settings, run_id)), Image.status == "ok").distinct().order_by(Image.id)
            ).scalars().all()
            if id_range is not None:
                rows = [img for img in rows if id_range[0] <= img.id <= id_range[1]]
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
            set_run_stats(s, run_id, "embed" if id_range is None else f"embed:{id_range[0]}", counts)
    finally:
        db.dispose()
    return counts


def match_run(settings: Settings, run_id: int, client_slug: str, embedder: Embedder | None = None, params: MatchParams = MatchParams()) -> dict[str, int]:
    """Match every image seen in this run against one client's gallery; upsert its findings.

    Images are ranked in ``settings.match_workers`` forked processes (one per core by default),
    which share the gallery's indexes built here; findings are written by this process alone.
    """
    tune_allocator()
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    store = ContentStore(settings.store_dir)
    db = Database(settings.database_url)
    workers = cpu_workers(settings.match_workers)
    counts = {"images": 0, "findings": 0, "new_findings": 0, "below_threshold": 0, "boilerplate": 0}
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            seen = run_date(run)
            client = get_client(s, client_slug)
            threshold = client.threshold if client.threshold is not None else settings.threshold
            gallery = client_gallery(s, settings, client, embedder)

            pages_of: dict[int, list[int]] = {}
            for page_id, image_id in run_links(s, settings, run_id):
                pages_of.setdefault(image_id, []).append(page_id)
            by_id = {img.id: img for img in s.scalars(select(Image).where(Image.id.in_(list(pages_of)), Image.status == "ok"))}
            pages_of = {i: p for i, p in sorted(pages_of.items()) if i in by_id}
            todo: list[tuple[int, Path, CachedTiles]] = []
            for image_id in pages_of:
                sha = by_id[image_id].sha256
                tiles = cached_tiles(s, settings.home, sha, QUERY_TILING, embedder)
                if tiles is None:
                    record_skip(s, run_id, "match", sha, "no tile vectors: the embed stage did not process this image")
                    continue
                todo.append((image_id, store.path(sha), tiles))
            # Pass 1: match every image (no writes), so that boilerplate, regions of protected
            # pages that many suspects match, is known before anything becomes a finding.
            log.info("%s: matching %d images against %d gallery images (%s)", client_slug, len(todo), len(gallery.rows),
                     "in this process" if workers == 1 else f"{workers} worker processes")
            matched: list[tuple[int, Match]] = []
            shown: list[tuple[int, Match]] = []
            _MATCH_WORK.update(gallery=gallery, params=params, max_pixels=settings.max_image_pixels)
            started = time.perf_counter()
            try:
                for n, (image_id, found, showing, unusable) in enumerate(fork_map(_match_image, todo, workers), 1):
                    if unusable:
                        record_skip(s, run_id, "match", by_id[image_id].sha256, unusable)
                    else:
                        counts["images"] += 1
                        matched += [(image_id, m) for m in found]
                        shown += [(image_id, m) for m in showing]
                    if n % 20 == 0 or n == len(todo):
                        elapsed = time.perf_counter() - started
                        log.info("%s: matched %d/%d images (%.1f s, %.1f images/s)", client_slug, n, len(todo), elapsed, n / max(elapsed, 1e-9))
            finally:
                _MATCH_WORK.clear()
            boilerplate = gallery.remember_boilerplate(frequent_regions(shown, params.boilerplate_images))
            # Pass 2: findings, each image's committed on their own: a task killed later keeps
            # them, and its retry upserts the same rows again.
            fail_after = os.environ.get(FAIL_AFTER_FINDINGS_ENV)
            for image_id, m in matched:
                if covered_share(m.verification.gallery_box, boilerplate.get(m.gallery_id, [])) >= params.template_share:
                    counts["boilerplate"] += 1
                    continue
                if m.score < threshold:
                    counts["below_threshold"] += 1
                    continue
                for page_id in sorted(set(pages_of[image_id])):
                    upsert_finding(s, client_id=client.id, image_id=image_id, page_id=page_id, run_id=run_id, seen=seen, match=m)
                counts["findings"] += 1
                s.commit()
                if fail_after is not None and counts["findings"] >= int(fail_after):
                    raise RuntimeError(f"{FAIL_AFTER_FINDINGS_ENV}={fail_after}: simulated crash after {counts['findings']} findings")
            log.info("%s: %d findings from %d images (%d boilerplate matches dropped)", client_slug, counts["findings"], counts["images"], counts["boilerplate"])
            # "New" means first seen in this run: the same number whether or not an earlier try
            # of this task already created some of them.
            counts["new_findings"] = s.scalar(
                select(func.count()).select_from(Finding).where(Finding.client_id == client.id, Finding.first_run_id == run_id)
            )
            set_run_stats(s, run_id, f"match:{client_slug}", counts)
    finally:
        db.dispose()
    return counts


#: What forked matching workers read (set by :func:`match_run` just before it starts them).
_MATCH_WORK: dict = {}


def _match_image(item: tuple[int, Path, CachedTiles]) -> tuple[int, list[Match], list[Match], str]:
    """One suspect image ranked against the gallery: its copies, the matches that show a shared
    region (boilerplate candidates), and why it could not be used ("" when it could: a stored
    file gone or damaged since the embed stage read it)."""
    image_id, path, tiles = item
    gallery, params = _MATCH_WORK["gallery"], _MATCH_WORK["params"]
    try:
        image = images.decode(path, max_pixels=_MATCH_WORK["max_pixels"])
    except images.BadImage as e:
        return image_id, [], [], f"stored file unusable: {e.reason}"
    ranked = rank_gallery(Query(image, tiles.load()), gallery.index, gallery, gallery.votes, params, top=checked_matches(params))
    return image_id, copies(ranked), [m for m in ranked if shows_region(m, params)], ""


def close_run(settings: Settings, run_id: int, status: str = "success") -> dict:
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            run = s.get(Run, run_id)
            run.status, run.finished_at = status, utcnow()
            return dict(run.stats or {})
    finally:
        db.dispose()


# --- the run's images, batches and run selection (daily, backfill and gallery DAGs) ---------------

def manifest_path(settings: Settings, run_id: int) -> Path:
    """Where the (page, image) pairs a run crawled are kept once its crawls are done."""
    return settings.home / "runs" / f"{run_id}.json"


def run_links(s: Session, settings: Settings, run_id: int) -> list[tuple[int, int]]:
    """The (page id, image id) pairs seen by run ``run_id``, sorted.

    A later run moves ``PageImage.last_run_id`` on, so an older run's pairs come from the manifest
    :func:`write_run_manifest` wrote after its crawls; a run without one falls back to the links
    whose last run it still is.
    """
    path = manifest_path(settings, run_id)
    if path.exists():
        return sorted((int(p), int(i)) for p, i in json.loads(path.read_text(encoding="utf-8"))["links"])
    return sorted(s.execute(select(PageImage.page_id, PageImage.image_id).where(PageImage.last_run_id == run_id)).tuples().all())


def _run_image_ids(s: Session, settings: Settings, run_id: int) -> list[int]:
    return sorted({image_id for _, image_id in run_links(s, settings, run_id)})


def write_run_manifest(settings: Settings, run_id: int) -> int:
    """Record the (page, image) pairs the run's crawls linked, so the run can be re-matched later."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            links = sorted(s.execute(select(PageImage.page_id, PageImage.image_id).where(PageImage.last_run_id == run_id)).tuples().all())
    finally:
        db.dispose()
    path = manifest_path(settings, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "links": [list(pair) for pair in links]}), encoding="utf-8")
    tmp.replace(path)
    return len(links)


def embed_batches(settings: Settings, run_id: int, size: int = EMBED_BATCH_SIZE) -> list[list[int]]:
    """Write the run's manifest, then split its decodable images by id into [lo, hi] batches."""
    n_links = write_run_manifest(settings, run_id)
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            ids = list(s.scalars(select(Image.id).where(Image.id.in_(_run_image_ids(s, settings, run_id)), Image.status == "ok").order_by(Image.id)))
            batches = [[ids[i], ids[min(i + size, len(ids)) - 1]] for i in range(0, len(ids), size)]
            set_run_stats(s, run_id, "plan", {"links": n_links, "images": len(ids), "embed_batches": len(batches)})
    finally:
        db.dispose()
    log.info("run %d: %d images in %d embedding batches", run_id, len(ids), len(batches))
    return batches


def runs_between(settings: Settings, first: date, last: date, kind: str = "daily") -> list[int]:
    """Ids of the ``kind`` runs dated (Asia/Seoul, see :func:`run_date`) first..last inclusive, oldest first."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            runs = s.scalars(select(Run).where(Run.kind == kind).order_by(Run.interval_end)).all()
            return [r.id for r in runs if first <= run_date(r) <= last]
    finally:
        db.dispose()


def recent_runs(settings: Settings, until: date, days: int) -> list[int]:
    """Daily runs of the ``days`` days up to and including ``until``."""
    return runs_between(settings, until - timedelta(days=days - 1), until)


def refresh_client_index(settings: Settings, client_slug: str, embedder: Embedder | None = None) -> dict[str, int]:
    """Embed the client's gallery images not yet embedded and rebuild its tile index if the gallery changed."""
    tune_allocator()
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            client = get_client(s, client_slug)
            index = client_index(s, settings, client, embedder)
            n_images = s.scalar(select(func.count()).select_from(GalleryImage).where(GalleryImage.client_id == client.id))
    finally:
        db.dispose()
    counts = {"gallery_images": int(n_images or 0), "tiles": len(index)}
    log.info("index of %s: %s", client_slug, counts)
    return counts


def rematch_plan(settings: Settings, run_ids: list[int], clients: list[str] | None = None) -> list[dict]:
    """(run, client) pairs to re-match, as keyword arguments of the mapped match and report tasks."""
    known = client_slugs(settings)
    wanted = [c for c in (clients or known) if c in known]
    missing = sorted(set(clients or []) - set(known))
    if missing:
        raise LookupError(f"no such clients: {', '.join(missing)}")
    return [{"cw_run_id": r, "client": c} for r in run_ids for c in wanted]


def report_client(settings: Settings, run_id: int, client_slug: str) -> Path:
    """Render the client's report of a run and record it; the report's path (what every DAG's
    report task does)."""
    from reports.render import render_client_report

    path = render_client_report(settings, run_id, client_slug)
    record_report(settings, run_id, client_slug)
    return path


def record_report(settings: Settings, run_id: int, client_slug: str) -> dict:
    """Keep the rendered report's counts on the run, under ``report:<client>``."""
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            client = get_client(s, client_slug)
            row = s.scalar(select(Report).where(Report.client_id == client.id, Report.run_id == run_id))
            if row is None:
                raise LookupError(f"no report of run {run_id} for {client_slug}")
            counts = {"findings": row.n_findings, "path": row.path}
            set_run_stats(s, run_id, f"report:{client_slug}", counts)
            return counts
    finally:
        db.dispose()
