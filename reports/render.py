"""Client report rendering: one self-contained HTML file per client and run, with outlined thumbnails."""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline import images
from pipeline.config import Settings
from pipeline.db import Client, Database, Finding, FindingSighting, GalleryImage, Image, Page, PageImage, Report, Run, Screenshot, Skip
from pipeline.findings import SUPPRESSED
from pipeline.repo import SEOUL, get_client, run_date, utcnow
from pipeline.review import apply_allowlist
from pipeline.store import ContentStore
from reports.export import write_exports
from reports.i18n import resolve_language, ui_strings

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE = "report.html"
THUMBS_DIR = "thumbs"

#: Largest thumbnail, in pixels; taller images are cropped around the matched region.
THUMB_MAX_WIDTH = 480
THUMB_MAX_HEIGHT = 720
#: Context kept around a matched region that is taller than the crop window, as a share of its height.
CROP_CONTEXT = 0.15
OUTLINE_RGB = (255, 0, 0)
OUTLINE_WIDTH = 3
JPEG_QUALITY = 85
#: Days shown in the trend chart, and its size in pixels.
TREND_DAYS = 14
TREND_WIDTH, TREND_HEIGHT, TREND_PAD = 560, 120, 18

#: Seller identity keys of ``Page.seller``, in display order.
SELLER_FIELDS = ("company", "representative", "business_number", "mail_order_number", "email", "address")
LINK_SCHEMES = ("http", "https")
_SAFE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Thumb:
    """A thumbnail beside the report (``src`` relative to it), or why there is none."""

    src: str | None = None
    width: int = 0
    height: int = 0
    error: str | None = None


@dataclass(frozen=True)
class FindingRow:
    """One reported finding with the rows it refers to."""

    finding: Finding
    page: Page
    image: Image
    gallery: GalleryImage


@dataclass(frozen=True)
class Card:
    """The evidence card of one finding, as the template shows it (raw values, escaped there)."""

    finding_id: int
    is_new: bool
    status: str
    score: float
    overlap: float
    mirrored: bool
    inliers: int | None
    page_url: str
    page_href: str | None
    shop: str
    title: str | None
    price: str | None
    seller: list[tuple[str, str]]
    first_seen: date
    last_seen: date
    #: When the screenshot was taken, else when the page was crawled (Asia/Seoul).
    capture_time: str | None
    suspect_image_url: str | None
    page_sha256: str | None
    suspect_sha256: str
    protected_sha256: str
    protected_label: str
    protected: Thumb
    suspect: Thumb
    screenshot: Thumb | None = None
    screenshot_sha256: str | None = None


@dataclass(frozen=True)
class ShopGroup:
    """The cards of one suspect shop, best score first."""

    shop: str
    cards: list[Card]


@dataclass(frozen=True)
class Summary:
    """Counts at the top of the report."""

    total: int
    new: int
    ongoing: int
    resolved: int
    previous_report: date | None
    per_shop: list[tuple[str, int]]
    threshold: float
    pages_crawled: int | None = None
    images_crawled: int | None = None


@dataclass(frozen=True)
class ResolvedRow:
    """A finding of the previous report that this run did not see again."""

    finding_id: int
    shop: str
    page_url: str
    last_seen: date


@dataclass(frozen=True)
class TrendBar:
    """One day of the trend chart (pixel geometry computed here; only numbers reach the SVG)."""

    day: date
    count: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class SkipRow:
    stage: str
    subject: str
    reason: str


@dataclass(frozen=True)
class ReportData:
    """Everything the template needs for one client and run."""

    language: str
    client_name: str
    run_id: int
    run_date: date
    summary: Summary
    groups: list[ShopGroup]
    skips: list[SkipRow] = field(default_factory=list)
    resolved: list[ResolvedRow] = field(default_factory=list)
    trend: list[TrendBar] = field(default_factory=list)
    trend_max: int = 0


def render_client_report(settings: Settings, run_id: int, client_slug: str, *, language: str | None = None) -> Path:
    """Write ``reports_dir/<client>/<run date>/report.html`` and its ``thumbs/``; record and return its path.

    Idempotent: a re-render replaces the HTML and the thumbnails and updates the one
    :class:`Report` row of (client, run).
    """
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            client = get_client(s, client_slug)
            run = _get_run(s, run_id)
            out_dir = report_dir(settings, client, run)
            apply_allowlist(s, client)
            rows = select_findings(s, client, run_id, client_threshold(settings, client))
            path = _write_report(settings, s, client, run, rows, out_dir, language)
            upsert_report_row(s, client.id, run_id, path, len(rows))
    finally:
        db.dispose()
    log.info("report for %s, run %d: %d findings -> %s", client_slug, run_id, len(rows), path)
    return path


def _get_run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run with id {run_id}")
    return run


def report_dir(settings: Settings, client: Client, run: Run) -> Path:
    """The folder of one client's report for one run, named by the run's (Seoul) date."""
    if not _SAFE_SLUG.match(client.slug):
        raise ValueError(f"client slug {client.slug!r} is not safe as a folder name")
    return settings.reports_dir / client.slug / run_date(run).isoformat()


def client_threshold(settings: Settings, client: Client) -> float:
    return client.threshold if client.threshold is not None else settings.threshold


def select_findings(s: Session, client: Client, run_id: int, threshold: float) -> list[FindingRow]:
    """This client's findings seen in the run, not dismissed or authorised, at or above the threshold."""
    stmt = (
        select(Finding, Page, Image, GalleryImage)
        .join(Page, Page.id == Finding.page_id)
        .join(Image, Image.id == Finding.image_id)
        .join(GalleryImage, GalleryImage.id == Finding.gallery_image_id)
        .where(
            Finding.client_id == client.id,
            GalleryImage.client_id == client.id,
            Finding.last_run_id == run_id,
            Finding.status.not_in(SUPPRESSED),
            Finding.score >= threshold,
        )
        .order_by(Finding.score.desc(), Finding.id)
    )
    return [FindingRow(*row) for row in s.execute(stmt).all()]


#: Skip stages whose subject is a client: another client's must never show in a report.
CLIENT_STAGES = ("notify", "report")
#: Skip stages whose subject is the page of some client's finding (evidence screenshots): a report
#: shows only those of its own pages, so no client learns which pages another client's findings are on.
PAGE_STAGES = ("screenshot",)


def select_skips(s: Session, run_id: int, client_slug: str | None = None, page_urls: set[str] | None = None) -> list[SkipRow]:
    """What the run skipped: crawl-wide skips, this client's own (notification, report) and, when
    ``page_urls`` is given, only the screenshot skips of those pages."""
    rows = s.scalars(select(Skip).where(Skip.run_id == run_id).order_by(Skip.stage, Skip.subject, Skip.id))
    return [
        SkipRow(stage=r.stage, subject=r.subject, reason=r.reason)
        for r in rows
        if (r.stage not in CLIENT_STAGES or r.subject == client_slug)
        and (r.stage not in PAGE_STAGES or page_urls is None or r.subject in page_urls)
    ]


def _write_report(
    settings: Settings, s: Session, client: Client, run: Run, rows: list[FindingRow], out_dir: Path, language: str | None
) -> Path:
    """Render into a staging folder, then swap the thumbnails and the HTML into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".thumbs-"))
    try:
        thumbs = write_thumbnails(settings, rows, staging)
        shots = write_screenshot_thumbs(settings, latest_screenshots(s, rows), staging)
        data = build_report_data(s, client, run, rows, thumbs, client_threshold(settings, client), language or client.language, shots)
        html = render_html(data)
        write_exports(out_dir, data)
        return _publish(out_dir, staging, html)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _publish(out_dir: Path, staging: Path, html: str) -> Path:
    final_thumbs = out_dir / THUMBS_DIR
    if final_thumbs.exists():
        shutil.rmtree(final_thumbs)
    staging.rename(final_thumbs)
    path = out_dir / REPORT_FILE
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def upsert_report_row(s: Session, client_id: int, run_id: int, path: Path, n_findings: int) -> Report:
    """The one report row of (client, run), created or refreshed."""
    row = s.scalar(select(Report).where(Report.client_id == client_id, Report.run_id == run_id))
    if row is None:
        row = Report(client_id=client_id, run_id=run_id, path=str(path), n_findings=n_findings, created_at=utcnow())
        s.add(row)
    else:
        row.path, row.n_findings, row.created_at = str(path), n_findings, utcnow()
    s.flush()
    return row


# --- thumbnails -------------------------------------------------------------------------------


def write_thumbnails(settings: Settings, rows: list[FindingRow], folder: Path) -> dict[int, tuple[Thumb, Thumb]]:
    """(protected, suspect) thumbnails per finding id, written into ``folder``; names come from ids only."""
    store = ContentStore(settings.store_dir)
    out: dict[int, tuple[Thumb, Thumb]] = {}
    for row in rows:
        f = row.finding
        protected = _thumb_for(store, row.gallery.sha256, f.gallery_box, folder, f"f{f.id}-protected.jpg", settings.max_image_pixels)
        suspect = _thumb_for(store, row.image.sha256, f.suspect_box, folder, f"f{f.id}-suspect.jpg", settings.max_image_pixels)
        out[f.id] = (protected, suspect)
    return out


def latest_screenshots(s: Session, rows: list[FindingRow]) -> dict[int, Screenshot]:
    """The newest screenshot of each reported page, by page id (pages never shot are absent)."""
    page_ids = {r.page.id for r in rows}
    if not page_ids:
        return {}
    out: dict[int, Screenshot] = {}
    for shot in s.scalars(select(Screenshot).where(Screenshot.page_id.in_(page_ids)).order_by(Screenshot.captured_at, Screenshot.id)):
        out[shot.page_id] = shot
    return out


def write_screenshot_thumbs(settings: Settings, shots: dict[int, Screenshot], folder: Path) -> dict[int, tuple[Screenshot, Thumb]]:
    """A thumbnail of the top of each page screenshot, named by page id only."""
    store = ContentStore(settings.store_dir)
    return {
        page_id: (shot, _thumb_for(store, shot.sha256, None, folder, f"p{page_id}-screenshot.jpg", settings.max_image_pixels))
        for page_id, shot in shots.items()
    }


def _thumb_for(store: ContentStore, sha256: str, box: Sequence[Any] | None, folder: Path, name: str, max_pixels: int) -> Thumb:
    """A thumbnail of a stored image; an unreadable file gives a card note instead of a picture."""
    try:
        im = images.decode(store.path(sha256), max_pixels=max_pixels)
    except images.BadImage as e:
        log.warning("no thumbnail for %s: %s", sha256, e.reason)
        return Thumb(error=e.reason)
    thumb = make_thumbnail(im, box)
    thumb.save(folder / name, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return Thumb(src=f"{THUMBS_DIR}/{name}", width=thumb.width, height=thumb.height)


def make_thumbnail(im: PILImage.Image, box: Sequence[Any] | None) -> PILImage.Image:
    """A reduced copy of ``im`` (cropped around ``box`` when very tall) with ``box`` outlined in red."""
    region_box = clamp_box(box, im.size)
    window = crop_window(im.size, region_box)
    region = im.crop(window)
    scale = min(1.0, THUMB_MAX_WIDTH / region.width, THUMB_MAX_HEIGHT / region.height)
    size = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
    thumb = region.resize(size, PILImage.Resampling.LANCZOS) if scale < 1.0 else region.copy()
    if region_box is not None:
        _outline(thumb, region_box, window, scale)
    return thumb


def clamp_box(box: Sequence[Any] | None, size: tuple[int, int]) -> Box | None:
    """``[x0, y0, x1, y1]`` clipped to the image, or None when absent or empty."""
    if not box or len(box) != 4:
        return None
    w, h = size
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    y0, y1 = max(0, min(y0, h)), max(0, min(y1, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_window(size: tuple[int, int], box: Box | None) -> Box:
    """The part of the image to show: all of it, or for a long detail image a band around ``box``."""
    w, h = size
    band = THUMB_MAX_HEIGHT * max(1.0, w / THUMB_MAX_WIDTH)
    if h <= band:
        return 0, 0, w, h
    if box is None:
        return 0, 0, w, int(band)
    box_h = box[3] - box[1]
    band = min(float(h), max(band, box_h * (1 + 2 * CROP_CONTEXT)))
    centre = (box[1] + box[3]) / 2
    top = int(max(0.0, min(centre - band / 2, h - band)))
    return 0, top, w, min(h, top + int(round(band)))


def _outline(thumb: PILImage.Image, box: Box, window: Box, scale: float) -> None:
    x0, y0 = (box[0] - window[0]) * scale, (box[1] - window[1]) * scale
    x1, y1 = (box[2] - window[0]) * scale, (box[3] - window[1]) * scale
    right, bottom = thumb.width - 1, thumb.height - 1
    xy = (max(0, round(x0)), max(0, round(y0)), min(right, round(x1)), min(bottom, round(y1)))
    ImageDraw.Draw(thumb).rectangle(xy, outline=OUTLINE_RGB, width=OUTLINE_WIDTH)


# --- view model and HTML ------------------------------------------------------------------------


def build_report_data(
    s: Session,
    client: Client,
    run: Run,
    rows: list[FindingRow],
    thumbs: dict[int, tuple[Thumb, Thumb]],
    threshold: float,
    language: str | None,
    screenshots: dict[int, tuple[Screenshot, Thumb]] | None = None,
) -> ReportData:
    previous = previous_report_run(s, client, run)
    since = run_date(previous) if previous is not None else None
    captures = capture_times(s, rows)
    urls = suspect_image_urls(s, rows)
    shots = screenshots or {}
    cards = [
        make_card(
            row, run.id, *thumbs[row.finding.id], since=since, capture_time=captures.get(row.page.id),
            image_url=urls.get(row.finding.id), screenshot=shots.get(row.page.id),
        )
        for row in rows
    ]
    resolved = select_resolved(s, client, previous, {r.finding.id for r in rows}, threshold) if previous is not None else []
    trend = findings_per_day(s, client, run, threshold)
    return ReportData(
        language=resolve_language(language),
        client_name=client.name,
        run_id=run.id,
        run_date=run_date(run),
        summary=summarise(cards, run.stats or {}, threshold, resolved=len(resolved), previous_report=since),
        groups=group_by_shop(cards),
        skips=select_skips(s, run.id, client.slug, {row.page.url for row in rows}),
        resolved=resolved,
        trend=trend_bars(trend),
        trend_max=max((n for _, n in trend), default=0),
    )


def previous_report_run(s: Session, client: Client, run: Run) -> Run | None:
    """The run of this client's latest report before ``run`` (None for a first report)."""
    stmt = (
        select(Run).join(Report, Report.run_id == Run.id)
        .where(Report.client_id == client.id, Run.interval_end < run.interval_end)
        .order_by(Run.interval_end.desc()).limit(1)
    )
    return s.scalar(stmt)


def select_resolved(s: Session, client: Client, previous: Run, current: set[int], threshold: float) -> list[ResolvedRow]:
    """Findings seen in the previous report's run and not in this one (dismissed and authorised ones excepted)."""
    stmt = (
        select(Finding, Page).join(Page, Page.id == Finding.page_id)
        .join(FindingSighting, FindingSighting.finding_id == Finding.id)
        .where(
            Finding.client_id == client.id, FindingSighting.run_id == previous.id,
            Finding.status.not_in(SUPPRESSED), Finding.score >= threshold,
        )
        .distinct().order_by(Finding.score.desc(), Finding.id)
    )
    return [
        ResolvedRow(finding_id=f.id, shop=page.shop, page_url=page.url, last_seen=f.last_seen)
        for f, page in s.execute(stmt).all() if f.id not in current
    ]


def capture_times(s: Session, rows: list[FindingRow]) -> dict[int, str]:
    """When each page was last crawled: the start of its last run, in Asia/Seoul time, per page id."""
    run_ids = {r.page.last_run_id for r in rows if r.page.last_run_id is not None}
    runs = {run.id: run for run in s.scalars(select(Run).where(Run.id.in_(run_ids)))} if run_ids else {}
    out = {}
    for r in rows:
        run = runs.get(r.page.last_run_id)
        if run is not None:
            out[r.page.id] = seoul_time(run.started_at)
    return out


def seoul_time(utc: datetime) -> str:
    """A naive UTC timestamp as Asia/Seoul wall time, to the minute."""
    return utc.replace(tzinfo=timezone.utc).astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")


def suspect_image_urls(s: Session, rows: list[FindingRow]) -> dict[int, str]:
    """The URL the suspect image was downloaded from, on the page it was last seen on, per finding id."""
    out = {}
    for r in rows:
        url = s.scalar(
            select(PageImage.url).where(PageImage.page_id == r.page.id, PageImage.image_id == r.image.id).order_by(PageImage.position).limit(1)
        )
        if url:
            out[r.finding.id] = url
    return out


def findings_per_day(s: Session, client: Client, run: Run, threshold: float) -> list[tuple[date, int]]:
    """Distinct reportable findings sighted per run day, for the last ``TREND_DAYS`` days up to this run."""
    stmt = (
        select(Run, func.count(func.distinct(FindingSighting.finding_id)))
        .join(FindingSighting, FindingSighting.run_id == Run.id)
        .join(Finding, Finding.id == FindingSighting.finding_id)
        .where(Finding.client_id == client.id, Finding.status.not_in(SUPPRESSED), Finding.score >= threshold, Run.interval_end <= run.interval_end)
        .group_by(Run.id)
    )
    per_day: Counter[date] = Counter()
    for r, n in s.execute(stmt).all():
        per_day[run_date(r)] += n
    last = run_date(run)
    days = [date.fromordinal(last.toordinal() - i) for i in range(TREND_DAYS - 1, -1, -1)]
    return [(d, per_day.get(d, 0)) for d in days]


def trend_bars(points: list[tuple[date, int]]) -> list[TrendBar]:
    """Bar geometry of the trend chart: one bar per day, scaled to the busiest day."""
    if not points:
        return []
    top = max(1, max(n for _, n in points))
    slot = (TREND_WIDTH - 2 * TREND_PAD) / len(points)
    plot_h = TREND_HEIGHT - 2 * TREND_PAD
    bars = []
    for i, (day, n) in enumerate(points):
        h = round(plot_h * n / top)
        bars.append(TrendBar(day=day, count=n, x=round(TREND_PAD + i * slot + slot * 0.15), y=TREND_PAD + plot_h - h, width=max(1, round(slot * 0.7)), height=h))
    return bars


def make_card(
    row: FindingRow, run_id: int, protected: Thumb, suspect: Thumb, *,
    since: date | None = None, capture_time: str | None = None, image_url: str | None = None,
    screenshot: tuple[Screenshot, Thumb] | None = None,
) -> Card:
    """The card of one finding; new means first seen after the previous report (or in this run, for a first report)."""
    f, page = row.finding, row.page
    inliers = (f.evidence or {}).get("inliers")
    return Card(
        finding_id=f.id,
        is_new=f.first_seen > since if since is not None else f.first_run_id == run_id,
        status=f.status,
        score=f.score,
        overlap=f.overlap,
        mirrored=f.mirrored,
        inliers=int(inliers) if inliers is not None else None,
        page_url=page.url,
        page_href=safe_href(page.url),
        shop=page.shop,
        title=page.title,
        price=page.price,
        seller=seller_fields(page.seller),
        first_seen=f.first_seen,
        last_seen=f.last_seen,
        capture_time=seoul_time(screenshot[0].captured_at) if screenshot else capture_time,
        suspect_image_url=image_url,
        page_sha256=page.content_sha256,
        suspect_sha256=row.image.sha256,
        protected_sha256=row.gallery.sha256,
        protected_label=row.gallery.label,
        protected=protected,
        suspect=suspect,
        screenshot=screenshot[1] if screenshot else None,
        screenshot_sha256=screenshot[0].sha256 if screenshot else None,
    )


def safe_href(url: str) -> str | None:
    """The URL when it may become a link (http or https with a host), else None."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() in LINK_SCHEMES and parts.netloc:
        return url.strip()
    return None


def seller_fields(seller: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(key, value) of the known seller identity fields the page showed, in display order."""
    seller = seller or {}
    out = []
    for key in SELLER_FIELDS:
        value = seller.get(key)
        if value is not None and str(value).strip():
            out.append((key, str(value).strip()))
    return out


def summarise(cards: list[Card], stats: dict[str, Any], threshold: float, *, resolved: int = 0, previous_report: date | None = None) -> Summary:
    new = sum(c.is_new for c in cards)
    per_shop = sorted(Counter(c.shop for c in cards).items(), key=lambda kv: (-kv[1], kv[0]))
    crawl = stats.get("crawl") or {}
    return Summary(
        total=len(cards),
        new=new,
        ongoing=len(cards) - new,
        resolved=resolved,
        previous_report=previous_report,
        per_shop=per_shop,
        threshold=threshold,
        pages_crawled=crawl.get("pages"),
        images_crawled=crawl.get("images"),
    )


def group_by_shop(cards: list[Card]) -> list[ShopGroup]:
    """Cards grouped by suspect shop; groups ordered by their best score (cards arrive sorted)."""
    groups: dict[str, list[Card]] = {}
    for card in cards:
        groups.setdefault(card.shop, []).append(card)
    return [ShopGroup(shop=shop, cards=shop_cards) for shop, shop_cards in groups.items()]


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(data: ReportData) -> str:
    """The report's HTML; every value from the data is escaped by the template engine."""
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(r=data, t=ui_strings(data.language))
