"""The analysts' app without Streamlit: sign-in, tenant-checked queries and review actions."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage

from pipeline import images
from pipeline.analysts import analyst_clients, authenticate, client_for
from pipeline.config import Settings
from pipeline.db import Client, Database
from pipeline.review import (
    FindingRow, allowlist_add, allowlist_entries, apply_allowlist, audit_trail, client_findings, decide, describe, get_finding,
)
from pipeline.search import Hit, search_gallery
from pipeline.store import ContentStore
from reports.render import make_thumbnail, seller_fields

log = logging.getLogger(__name__)

#: Largest upload the search accepts, in bytes.
MAX_UPLOAD_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class Analyst:
    """The signed-in analyst (ids only; access is checked again on every call)."""

    id: int
    name: str


@dataclass(frozen=True)
class Detail:
    """A finding as the detail view shows it."""

    facts: dict[str, Any]
    protected: PILImage.Image | None
    suspect: PILImage.Image | None
    audit: list[dict[str, Any]]


class SignInThrottle:
    """Refuses sign-in for an analyst name after too many recent failures (per app process)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, clock=time.monotonic) -> None:
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, name: str) -> bool:
        with self._lock:
            now = self._clock()
            recent = [t for t in self._failures.get(name, []) if now - t < self.window_s]
            self._failures[name] = recent
            return len(recent) >= self.max_failures

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures.setdefault(name, []).append(self._clock())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


THROTTLE = SignInThrottle()


def sign_in(db: Database, name: str, password: str, throttle: SignInThrottle = THROTTLE) -> Analyst | None:
    """The analyst for a right name and password; None otherwise, and while the name is throttled."""
    key = (name or "").strip()
    if throttle.blocked(key):
        log.warning("sign-in for %r refused: too many failed attempts", key)
        return None
    with db.session() as s:
        a = authenticate(s, key, password)
        if a is None:
            throttle.failed(key)
            return None
        throttle.succeeded(key)
        return Analyst(a.id, a.name)


def client_choices(db: Database, who: Analyst) -> list[tuple[str, str]]:
    """(slug, name) of the clients this analyst may see."""
    with db.session() as s:
        return [(c.slug, c.name) for c in analyst_clients(s, who.id)]


def _allowed_ids(s, who: Analyst) -> set[int]:
    return {c.id for c in analyst_clients(s, who.id)}


def queue(db: Database, who: Analyst, slug: str, status: str | None = "new") -> list[dict[str, Any]]:
    """The client's findings to review (allowlisted sellers authorised first), best score first."""
    with db.session() as s:
        client = client_for(s, who.id, slug)
        apply_allowlist(s, client)
        return [facts(row) for row in client_findings(s, client, status)]


def facts(row: FindingRow) -> dict[str, Any]:
    """A finding's facts as plain values (crawled text included as is: the caller shows it as text)."""
    f, page = row.finding, row.page
    return {
        "id": f.id, "status": f.status, "score": round(f.score, 3), "overlap_pct": round(f.overlap * 100), "shop": page.shop,
        "page_url": page.url, "title": page.title or "", "price": page.price or "",
        "seller": "; ".join(f"{k}: {v}" for k, v in seller_fields(page.seller)),
        "first_seen": f.first_seen.isoformat(), "last_seen": f.last_seen.isoformat(),
        "suspect_sha256": row.image.sha256, "protected_sha256": row.gallery.sha256, "protected_file": row.gallery.label,
    }


def review(db: Database, who: Analyst, finding_id: int, verb: str, note: str | None = None) -> dict[str, Any]:
    """Record the analyst's decision on a finding of one of their clients."""
    with db.session() as s:
        finding = get_finding(s, finding_id, _allowed_ids(s, who))
        return describe(decide(s, finding, verb, who.name, note))


def detail(db: Database, settings: Settings, who: Analyst, slug: str, finding_id: int) -> Detail:
    """One finding of the chosen client: facts, outlined images and its audit trail."""
    store = ContentStore(settings.store_dir)
    with db.session() as s:
        client = client_for(s, who.id, slug)
        rows = client_findings(s, client, finding_id=finding_id)
        if not rows:
            raise LookupError(f"no finding {finding_id} for client {slug}")
        row = rows[0]
        trail = [describe(d) for d in audit_trail(s, client, finding_id)]
        return Detail(
            facts=facts(row),
            protected=_outlined(store, row.gallery.sha256, row.finding.gallery_box, settings),
            suspect=_outlined(store, row.image.sha256, row.finding.suspect_box, settings),
            audit=trail,
        )


def _outlined(store: ContentStore, sha256: str, box: list[Any] | None, settings: Settings) -> PILImage.Image | None:
    try:
        return make_thumbnail(images.decode(store.path(sha256), max_pixels=settings.max_image_pixels), box)
    except images.BadImage as e:
        log.warning("cannot show %s: %s", sha256, e.reason)
        return None


def search(db: Database, settings: Settings, who: Analyst, slug: str, data: bytes, top: int = 10) -> tuple[PILImage.Image, list[tuple[Hit, PILImage.Image | None]]]:
    """The uploaded image and the client's top gallery images, each with its matched region outlined."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    query = images.decode(data, max_pixels=settings.max_image_pixels)
    store = ContentStore(settings.store_dir)
    with db.session() as s:
        client: Client = client_for(s, who.id, slug)
        hits = search_gallery(s, settings, client, query, top=top)
    best_box = next((h.query_box for h in hits if h.score > 0 and h.query_box), None)
    return make_thumbnail(query, best_box), [(h, _outlined(store, h.sha256, h.gallery_box if h.score > 0 else None, settings)) for h in hits]


def allowlist(db: Database, who: Analyst, slug: str) -> list[dict[str, str]]:
    with db.session() as s:
        client = client_for(s, who.id, slug)
        return [{"kind": e.kind, "value": e.value, "added_by": e.added_by, "added_at": e.added_at.date().isoformat()} for e in allowlist_entries(s, client)]


def add_to_allowlist(db: Database, who: Analyst, slug: str, kind: str, value: str) -> int:
    """Add a domain or business number to the client's allowlist; return how many findings it authorised."""
    if kind not in ("domain", "business_number"):
        raise ValueError(f"unknown allowlist kind {kind!r}")
    with db.session() as s:
        client = client_for(s, who.id, slug)
        allowlist_add(s, client, added_by=who.name, **{kind: value})
        return len(apply_allowlist(s, client))
