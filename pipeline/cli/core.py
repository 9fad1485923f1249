"""Core commands: clients, galleries, targets, runs, reports, search, eval and the demo."""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

from pipeline.config import Settings, load_settings

log = logging.getLogger(__name__)


def register(sub) -> None:
    _client(sub)
    _gallery(sub)
    _target(sub)
    p = sub.add_parser("run", help="one daily run without Airflow: crawl, embed, match, report",
                       description="Run one daily monitoring run in this process, through the same stage functions as the "
                       "copywatch_daily DAG, and print the path of each client's report.")
    p.add_argument("--date", type=date.fromisoformat, help="the run's date (Asia/Seoul; default today)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="render a client's report for a run",
                       description="Render (again) a client's HTML report for the run of a date and print its path.")
    p.add_argument("client")
    p.add_argument("--date", type=date.fromisoformat, help="the run's date (default: the latest run)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("search", help="the 10 most similar gallery images of a client for an image",
                       description="Search one image against a client's protected gallery (the study's tool): "
                       "prints the top gallery images with their scores and the matched regions.")
    p.add_argument("image", type=Path)
    p.add_argument("--client", required=True)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="evaluate matching on a dataset (gallery/, queries/, truth.csv)",
                       description="Rank every query of DATASET against its gallery; write DIR/rankings.csv "
                       "(query,rank,gallery,score: top 10 distinct gallery images) and DIR/metrics.json "
                       "(rank1, rank10, uap, recall_at_p90, precision/recall at the report threshold, throughput); print the metrics.")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, help="output folder (default DATASET/eval-<embedder>)")
    p.add_argument("--embedder", help="'default' or 'unicom:<name>' (default: COPYWATCH_EMBEDDER)")
    p.add_argument("--weights", type=Path, help="checkpoint file for a Unicom embedder")
    p.add_argument("--threshold", type=float, help="report threshold (default: COPYWATCH_THRESHOLD)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core for the default embedder, "
                   "1 for Unicom); the figures do not depend on it")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the main job on the embedded default: demo mall + Airflow daily run",
                       description="Build and start the bundled demo mall on 127.0.0.1, set up the demo client, its gallery and "
                       "the demo shops as crawl targets, run the copywatch_daily DAG once through Airflow (`airflow dags test`, "
                       "SQLite, AIRFLOW_HOME inside the data folder) and print the path of the client's report.")
    p.add_argument("--date", type=date.fromisoformat, help="the run's date (default today, Asia/Seoul)")
    p.add_argument("--no-airflow", action="store_true", help="run the stages in this process instead of through Airflow")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    dsub = p.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    m = dsub.add_parser("migrate", help="create or upgrade the database schema (Alembic)")
    m.set_defaults(func=cmd_db_migrate)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _db(settings: Settings):
    from pipeline.db import Database

    return Database(settings.database_url)


# --- clients, galleries, targets -----------------------------------------------------------

def _client(sub) -> None:
    p = sub.add_parser("client", help="add or list clients (rights holders)", description="Manage clients.")
    csub = p.add_subparsers(dest="client_command", metavar="CLIENT_COMMAND")
    a = csub.add_parser("add", help="add a client, or update its name, language or threshold")
    a.add_argument("slug", help="short id, e.g. hanbit")
    a.add_argument("--name", required=True)
    a.add_argument("--language", choices=["ko", "en"], default="ko", help="report language (default ko)")
    a.add_argument("--threshold", type=float, help="report threshold for this client (default: the global one)")
    a.set_defaults(func=cmd_client_add)
    ls = csub.add_parser("list", help="list clients with their gallery sizes")
    ls.set_defaults(func=cmd_client_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def cmd_client_add(args) -> int:
    from pipeline.repo import upsert_client

    db = _db(load_settings())
    with db.session() as s:
        c = upsert_client(s, args.slug, args.name, args.language, args.threshold)
        print(f"client {c.slug} (id {c.id}): {c.name}")
    return 0


def cmd_client_list(args) -> int:
    from sqlalchemy import func, select

    from pipeline.db import Client, GalleryImage

    db = _db(load_settings())
    with db.session() as s:
        rows = s.execute(
            select(Client, func.count(GalleryImage.id)).outerjoin(GalleryImage, GalleryImage.client_id == Client.id).group_by(Client.id).order_by(Client.slug)
        ).all()
        for c, n in rows:
            print(f"{c.slug}\t{c.name}\t{c.language}\t{n} gallery images")
    return 0


def _gallery(sub) -> None:
    p = sub.add_parser("gallery", help="manage a client's protected gallery", description="Manage protected galleries.")
    gsub = p.add_subparsers(dest="gallery_command", metavar="GALLERY_COMMAND")
    a = gsub.add_parser("add", help="add images (files or folders) to a client's gallery",
                        description="Store the images once by SHA-256 and add them to the client's gallery; the client's "
                        "tile index is rebuilt on the next match.")
    a.add_argument("client")
    a.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    a.add_argument("--no-event", action="store_true", help="do not tell Airflow (no copywatch_gallery run)")
    a.set_defaults(func=cmd_gallery_add)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    p = sub.add_parser("rematch", help="re-match stored crawls of recent days against a client's current gallery",
                       description="Without Airflow and without any HTTP request: rebuild the client's index, re-match the "
                       "images crawled by the daily runs of the last DAYS days (default COPYWATCH_REMATCH_DAYS, 7) and "
                       "render those reports again (what the copywatch_gallery DAG does).")
    p.add_argument("client")
    p.add_argument("--days", type=int, help="days of daily runs to re-match, up to --until")
    p.add_argument("--until", type=date.fromisoformat, help="last day (default today, Asia/Seoul)")
    p.set_defaults(func=cmd_rematch)


def cmd_gallery_add(args) -> int:
    from pipeline.airflow_events import emit_gallery_changed
    from pipeline.gallery import add_images

    settings = load_settings()
    db = _db(settings)
    with db.session() as s:
        counts = add_images(s, settings, args.client, args.paths)
    print(f"{args.client}: {counts['added']} added, {counts['already_present']} already present, {counts['bad']} not images")
    if counts["added"] and not args.no_event:
        emit_gallery_changed(settings, args.client, counts)
    return 0 if counts["bad"] == 0 else 1


def rematch_recent(settings: Settings, client: str, until: date, days: int) -> list[Path]:
    """Re-index the client and re-match the daily runs of ``days`` days up to ``until``; re-render their reports."""
    from pipeline import stages
    from reports.render import render_client_report

    stages.refresh_client_index(settings, client)
    paths = []
    for pair in stages.rematch_plan(settings, stages.recent_runs(settings, until, days), [client]):
        stages.match_run(settings, pair["cw_run_id"], client)
        paths.append(render_client_report(settings, pair["cw_run_id"], client))
    return paths


def cmd_rematch(args) -> int:
    settings = load_settings()
    for path in rematch_recent(settings, args.client, args.until or seoul_today(), args.days or settings.rematch_days):
        print(path)
    return 0


def _count_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (a crawl limit; 0 pages is not "no limit")."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _target(sub) -> None:
    from crawler.platforms import PLATFORMS

    p = sub.add_parser("target", help="manage crawl targets (shops)", description="Manage crawl targets.")
    tsub = p.add_subparsers(dest="target_command", metavar="TARGET_COMMAND")
    a = tsub.add_parser("add", help="add or update a shop to crawl")
    a.add_argument("name", help="a unique name for the target, e.g. the shop's name")
    a.add_argument("url", help="start URL: the shop's home or a category listing")
    a.add_argument("--platform", default="cafe24", choices=PLATFORMS,
                   help="shop platform (default cafe24); Coupang is refused (its robots.txt disallows generic agents)")
    a.add_argument("--max-pages", type=_count_at_least(1), default=500, help="product pages per crawl, at least 1 (default 500)")
    a.add_argument("--max-depth", type=_count_at_least(0), default=4,
                   help="listing links followed from the start URL; 0: the start page's products only (default 4)")
    a.set_defaults(func=cmd_target_add)
    ls = tsub.add_parser("list", help="list crawl targets")
    ls.set_defaults(func=cmd_target_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def cmd_target_add(args) -> int:
    from urllib.parse import urlsplit

    from crawler.platforms import refused_reason
    from pipeline.repo import upsert_target

    if urlsplit(args.url).scheme not in ("http", "https"):
        raise ValueError(f"{args.url!r} is not an http(s) URL")
    why = refused_reason(args.url)
    if why:
        raise ValueError(f"refusing target {args.url}: {why}")
    db = _db(load_settings())
    with db.session() as s:
        t = upsert_target(s, args.name, args.url, args.platform, args.max_pages, args.max_depth)
        print(f"target {t.name} (id {t.id}): {t.start_url} [{t.platform}] max pages {t.max_pages}, max depth {t.max_depth}")
    return 0


def cmd_target_list(args) -> int:
    from sqlalchemy import select

    from pipeline.db import CrawlTarget

    db = _db(load_settings())
    with db.session() as s:
        for t in s.scalars(select(CrawlTarget).order_by(CrawlTarget.id)):
            print(f"{t.id}\t{t.name}\t{t.platform}\t{t.start_url}\tmax_pages={t.max_pages}\tmax_depth={t.max_depth}"
                  f"\t{'enabled' if t.enabled else 'disabled'}")
    return 0


# --- runs and reports ----------------------------------------------------------------------

def seoul_today() -> date:
    from pipeline.repo import SEOUL

    return datetime.now(SEOUL).date()


def daily_interval(day: date) -> tuple[datetime, datetime]:
    """The data interval the copywatch_daily schedule (06:00 Asia/Seoul) gives the run of ``day``."""
    from pipeline.repo import SEOUL

    end = datetime.combine(day, time(6, 0), tzinfo=SEOUL)
    return end - timedelta(days=1), end


def backfill_days(start: str | date | None, end: str | date | None) -> list[date]:
    """The days start..end inclusive (``end`` defaults to ``start``)."""
    if not start:
        raise ValueError("a backfill needs a start date (param 'start', YYYY-MM-DD)")
    first = start if isinstance(start, date) else date.fromisoformat(start)
    last = first if not end else end if isinstance(end, date) else date.fromisoformat(end)
    if last < first:
        raise ValueError(f"backfill end {last} is before its start {first}")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def run_daily(settings: Settings, day: date, targets: list[int] | None = None, clients: list[str] | None = None) -> list[Path]:
    """One daily run in this process, through the same stage functions the DAG calls.

    ``targets`` (crawl target ids) and ``clients`` (slugs) narrow the run; by default all.
    """
    from crawler.run import crawl_target
    from pipeline import stages
    from pipeline.evidence import capture_evidence
    from reports.render import render_client_report

    start, end = daily_interval(day)
    run_id = stages.open_run(settings, start, end)
    enabled = stages.enabled_targets(settings)
    targets = [t for t in enabled if targets is None or t in targets]
    for n, target_id in enumerate(targets, 1):
        log.info("crawling target %d (%d/%d)", target_id, n, len(targets))
        counts = crawl_target(settings, target_id, run_id, stages.run_day(settings, run_id),
                              timeout_s=settings.crawl_timeout_s or None)
        stages.record_crawl(settings, run_id, target_id, counts)
    stages.write_run_manifest(settings, run_id)
    stages.embed_run_images(settings, run_id)
    paths = []
    for slug in stages.client_slugs(settings):
        if clients is not None and slug not in clients:
            continue
        stages.match_run(settings, run_id, slug)
        capture_evidence(settings, run_id, slug)
        paths.append(render_client_report(settings, run_id, slug))
    stages.close_run(settings, run_id)
    return paths


def cmd_run(args) -> int:
    for path in run_daily(load_settings(), args.date or seoul_today()):
        print(path)
    return 0


def cmd_report(args) -> int:
    from sqlalchemy import select

    from pipeline.db import Run
    from pipeline.repo import run_date
    from reports.render import render_client_report

    settings = load_settings()
    db = _db(settings)
    with db.session() as s:
        runs = s.scalars(select(Run).where(Run.kind == "daily").order_by(Run.interval_end.desc())).all()
        if args.date:
            runs = [r for r in runs if run_date(r) == args.date]
        if not runs:
            raise LookupError("no daily run" + (f" on {args.date}" if args.date else "") + ": start one with `copywatch run`")
        run_id = runs[0].id
    print(render_client_report(settings, run_id, args.client))
    return 0


# --- search and eval -------------------------------------------------------------------------

def cmd_search(args) -> int:
    from pipeline import images
    from pipeline.embed import get_embedder
    from pipeline.gallery import client_gallery
    from pipeline.match import MatchParams, Query, rank_gallery
    from pipeline.repo import get_client
    from pipeline.tilecache import embed_tiles
    from pipeline.tiling import QUERY_TILING

    settings = load_settings()
    embedder = get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    query = images.decode(args.image, max_pixels=settings.max_image_pixels)
    db = _db(settings)
    with db.session() as s:
        client = get_client(s, args.client)
        gallery = client_gallery(s, settings, client, embedder)
        params = MatchParams(max_candidates=args.top, candidate_score=-1.0)
        ranked = rank_gallery(Query(query, embed_tiles(query, QUERY_TILING, embedder)), gallery.index, gallery, gallery.votes, params, top=args.top)
        rows = [
            {
                "rank": r,
                "gallery_id": m.gallery_id,
                "label": gallery.rows[m.gallery_id].label,
                "sha256": gallery.rows[m.gallery_id].sha256,
                "score": round(m.score, 4),
                "cosine": round(m.cosine, 4),
                "inliers": m.verification.inliers if m.verification else 0,
                "query_box": list(m.verification.query_box or ()) if m.verification else [],
                "gallery_box": list(m.verification.gallery_box or ()) if m.verification else [],
                "mirrored": bool(m.verification and m.verification.mirrored),
            }
            for r, m in enumerate(ranked, 1)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print(f"{'rank':>4}  {'score':>6}  {'cosine':>6}  {'inliers':>7}  gallery image (matched region)")
        for row in rows:
            region = f" {row['gallery_box']}" if row["gallery_box"] else ""
            print(f"{row['rank']:>4}  {row['score']:>6.3f}  {row['cosine']:>6.3f}  {row['inliers']:>7}  {row['label']}{region}")
    return 0


def cmd_eval(args) -> int:
    from pipeline.embed import get_embedder
    from pipeline.evaluate import evaluate

    settings = load_settings()
    embedder = get_embedder(args.embedder or settings.embedder, weights=args.weights, weights_dir=settings.weights_dir)
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in embedder.id)
    out = args.out or args.dataset / f"eval-{safe}"
    m = evaluate(args.dataset, out, embedder, settings.threshold if args.threshold is None else args.threshold,
                 workers=args.workers)
    t = m["throughput"]
    print(f"dataset {args.dataset} ({m['queries']} queries, {m['copy_queries']} copies, {m['gallery_images']} gallery images, embedder {m['embedder']})")
    f = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731 (a set without copies has no ranks)
    print(f"rank1 {f(m['rank1'])}  rank10 {f(m['rank10'])}  uap {f(m['uap'])}  recall_at_p90 {f(m['recall_at_p90'])}")
    print(f"at threshold {m['threshold']}: precision {f(m['precision_at_threshold'])}  recall {f(m['recall_at_threshold'])}  ({m['predictions_at_threshold']} predictions)")
    print(f"throughput ({t['workers']} workers): gallery {t['gallery_tiles_per_s']:.1f} tiles/s "
          f"({m['gallery_images']} images in {t['gallery_seconds']} s), queries {t['query_images_per_s']:.2f} images/s, "
          f"overall {t['overall_images_per_s']:.2f} images/s")
    st = t["gallery_stage_seconds"]
    print(f"gallery stages: images (decode, tiles, SIFT, pixels) {st['images']} s, vote index {st['vote_index']} s, "
          f"template search {st['templates']} s")
    print(f"wrote {out / 'rankings.csv'} and {out / 'metrics.json'}")
    return 0


# --- demo and maintenance ------------------------------------------------------------------

def _airflow(settings: Settings, *argv: str) -> None:
    from pipeline.airflow_env import airflow_env

    exe = Path(sys.executable).with_name("airflow")
    cmd = [str(exe), *argv]
    log.info("running %s", " ".join(cmd))
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env=airflow_env(settings), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"`airflow {' '.join(argv)}` failed with exit code {proc.returncode}:\n{tail}")
    log.debug("%s", proc.stdout[-2000:])


def ensure_pool(settings: Settings) -> None:
    """Create the embedding pool (`airflow pools set`) unless it exists; its size is left alone."""
    from pipeline.airflow_env import EMBED_POOL, EMBED_POOL_SLOTS, airflow_env

    exe = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(exe), "pools", "get", EMBED_POOL], env=airflow_env(settings), capture_output=True, text=True)
    if proc.returncode != 0:
        _airflow(settings, "pools", "set", EMBED_POOL, str(EMBED_POOL_SLOTS), "copywatch: concurrent embedding tasks")


def cmd_demo(args) -> int:
    from sqlalchemy import select

    from crawler.demo.build import build_demo
    from crawler.demo.seed import seed_demo
    from crawler.demo.server import DemoMall
    from pipeline.db import Report, Run
    from pipeline.repo import run_date

    settings = load_settings()
    day = args.date or seoul_today()
    # The demo mall runs on this machine: the polite delays meant for real shops only slow it down.
    os.environ.setdefault("COPYWATCH_SCRAPY_SETTINGS", json.dumps({"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False}))
    manifest = build_demo(settings.home / "demo")
    with DemoMall(settings.home / "demo") as mall:
        log.info("demo mall serving %s", ", ".join(f"{k} at {v}" for k, v in mall.base_urls.items()))
        seed_demo(settings, manifest, settings.home / "demo", mall.base_urls)
        if args.no_airflow:
            paths = run_daily(settings, day)
        else:
            _airflow(settings, "db", "migrate")
            ensure_pool(settings)
            _airflow(settings, "dags", "test", "copywatch_daily", daily_interval(day)[1].isoformat())
            db = _db(settings)
            with db.session() as s:
                runs = [r for r in s.scalars(select(Run).where(Run.kind == "daily")) if run_date(r) == day]
                if not runs:
                    raise RuntimeError(f"the DAG run finished but no copywatch run is recorded for {day}")
                paths = [Path(r.path) for r in s.scalars(select(Report).where(Report.run_id == runs[0].id).order_by(Report.id))]
    for p in paths:
        print(p)
    return 0


def cmd_db_migrate(args) -> int:
    from pipeline.db import migrate

    settings = load_settings()
    migrate(settings.database_url)
    print(f"database at {settings.database_url} is up to date")
    return 0
