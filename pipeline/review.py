"""Review: analysts' decisions on findings with an audit trail, and each client's allowlist of sellers."""
from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import AllowlistEntry, Client, Finding, GalleryImage, Image, Page, ReviewDecision
from pipeline.repo import utcnow

log = logging.getLogger(__name__)

#: Decisions an analyst can make, by the verb the CLI and the app use.
VERBS = {"confirm": "confirmed", "dismiss": "dismissed", "authorise": "authorised"}
DECISIONS = tuple(VERBS.values())
#: Every status a finding can have.
STATUSES = ("new", *DECISIONS)
#: The analyst name of automatic authorisations by the allowlist.
ALLOWLIST_ANALYST = "allowlist"
ALLOWLIST_KINDS = ("domain", "business_number")
MAX_NOTE = 2000

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_ANALYST = re.compile(r"^[\w.@-]{1,100}$")


@dataclass(frozen=True)
class FindingRow:
    """A finding with the rows it refers to: the page it was last seen on and both images."""

    finding: Finding
    page: Page
    image: Image
    gallery: GalleryImage


def check_analyst_name(name: str) -> str:
    """The analyst name, stripped; letters, digits, ``_ . @ -`` only."""
    name = (name or "").strip()
    if not _ANALYST.match(name):
        raise ValueError(f"analyst name {name!r} must be 1-100 letters, digits or _ . @ -")
    return name


def decision_of(verb_or_status: str) -> str:
    """The status a verb (confirm, dismiss, authorise) or a status name stands for."""
    value = verb_or_status.strip().lower().replace("authorize", "authorise")
    if value in VERBS:
        return VERBS[value]
    if value in DECISIONS:
        return value
    raise ValueError(f"unknown decision {verb_or_status!r}: use one of {', '.join(VERBS)}")


def get_finding(s: Session, finding_id: int, client_ids: Collection[int] | None = None) -> Finding:
    """The finding, only when it belongs to one of ``client_ids`` (None: any client, for operators)."""
    f = s.get(Finding, finding_id)
    if f is None or (client_ids is not None and f.client_id not in client_ids):
        raise LookupError(f"no finding {finding_id}" + ("" if client_ids is None else " for your clients"))
    return f


def decide(s: Session, finding: Finding, decision: str, analyst: str, note: str | None = None) -> ReviewDecision:
    """Set the finding's status and append the decision to the audit trail."""
    status = decision_of(decision)
    who = analyst if analyst == ALLOWLIST_ANALYST else check_analyst_name(analyst)
    note = (note or "").strip()[:MAX_NOTE] or None
    row = ReviewDecision(
        finding_id=finding.id, client_id=finding.client_id, decision=status, previous_status=finding.status,
        analyst=who, note=note, decided_at=utcnow(),
    )
    finding.status = status
    s.add(row)
    s.flush()
    log.info("finding %d: %s -> %s by %s", finding.id, row.previous_status, status, who)
    return row


def audit_trail(s: Session, client: Client, finding_id: int | None = None) -> list[ReviewDecision]:
    """The client's review decisions, oldest first (one finding's only when ``finding_id`` is given)."""
    stmt = select(ReviewDecision).where(ReviewDecision.client_id == client.id)
    if finding_id is not None:
        stmt = stmt.where(ReviewDecision.finding_id == finding_id)
    return list(s.scalars(stmt.order_by(ReviewDecision.decided_at, ReviewDecision.id)))


def client_findings(s: Session, client: Client, status: str | None = None, finding_id: int | None = None) -> list[FindingRow]:
    """The client's findings (optionally of one status), best score first."""
    stmt = (
        select(Finding, Page, Image, GalleryImage)
        .join(Page, Page.id == Finding.page_id)
        .join(Image, Image.id == Finding.image_id)
        .join(GalleryImage, GalleryImage.id == Finding.gallery_image_id)
        .where(Finding.client_id == client.id, GalleryImage.client_id == client.id)
    )
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        stmt = stmt.where(Finding.status == status)
    if finding_id is not None:
        stmt = stmt.where(Finding.id == finding_id)
    return [FindingRow(*row) for row in s.execute(stmt.order_by(Finding.score.desc(), Finding.id)).all()]


# --- allowlist ---------------------------------------------------------------------------------


def normalise_domain(value: str) -> str:
    """A bare lower-case host name (a URL or ``www.`` prefix is accepted and reduced)."""
    raw = value.strip().lower()
    host = urlsplit(raw).hostname if "://" in raw else raw.split("/", 1)[0]
    host = (host or "").rstrip(".").removeprefix("www.")
    host = host.encode("idna").decode("ascii") if host and not host.isascii() else host
    if not _DOMAIN.match(host):
        raise ValueError(f"{value!r} is not a domain name")
    return host


def normalise_business_number(value: str) -> str:
    """The 10 digits of a Korean business registration number (사업자등록번호), e.g. 1234567890."""
    digits = re.sub(r"\D", "", value or "")
    if len(digits) != 10:
        raise ValueError(f"{value!r} is not a 10-digit business registration number")
    return digits


def allowlist_add(s: Session, client: Client, *, domain: str | None = None, business_number: str | None = None, added_by: str = "cli") -> tuple[AllowlistEntry, bool]:
    """Authorise a seller for this client; findings on its pages are authorised from now on."""
    if (domain is None) == (business_number is None):
        raise ValueError("give exactly one of a domain or a business number")
    kind, value = ("domain", normalise_domain(domain)) if domain is not None else ("business_number", normalise_business_number(business_number or ""))
    entry = s.scalar(select(AllowlistEntry).where(AllowlistEntry.client_id == client.id, AllowlistEntry.kind == kind, AllowlistEntry.value == value))
    created = entry is None
    if created:
        entry = AllowlistEntry(client_id=client.id, kind=kind, value=value, added_by=added_by, added_at=utcnow())
        s.add(entry)
        s.flush()
        log.info("client %s: allowlisted %s %s", client.slug, kind, value)
    return entry, created


def allowlist_entries(s: Session, client: Client) -> list[AllowlistEntry]:
    return list(s.scalars(select(AllowlistEntry).where(AllowlistEntry.client_id == client.id).order_by(AllowlistEntry.kind, AllowlistEntry.value)))


def allowlist_match(page: Page, entries: Collection[AllowlistEntry]) -> AllowlistEntry | None:
    """The entry that authorises the seller of ``page`` (its host or shown business number), if any."""
    host = (urlsplit(page.url).hostname or "").lower().rstrip(".")
    number = re.sub(r"\D", "", str((page.seller or {}).get("business_number") or ""))
    for entry in entries:
        if entry.kind == "domain" and (host == entry.value or host.endswith("." + entry.value)):
            return entry
        if entry.kind == "business_number" and number == entry.value:
            return entry
    return None


def apply_allowlist(s: Session, client: Client) -> list[ReviewDecision]:
    """Authorise the client's new findings on allowlisted sellers, each with an audit entry by "allowlist".

    Findings an analyst already decided keep that decision.
    """
    entries = allowlist_entries(s, client)
    if not entries:
        return []
    decided = []
    for row in client_findings(s, client, status="new"):
        entry = allowlist_match(row.page, entries)
        if entry is not None:
            note = f"allowlisted {entry.kind} {entry.value}"
            decided.append(decide(s, row.finding, "authorised", ALLOWLIST_ANALYST, note))
    return decided


def describe(d: ReviewDecision) -> dict[str, str | int | None]:
    """A decision as plain values (CLI JSON, the app's audit table)."""
    return {
        "finding_id": d.finding_id, "decision": d.decision, "previous_status": d.previous_status,
        "analyst": d.analyst, "note": d.note, "decided_at": _iso(d.decided_at),
    }


def _iso(dt: datetime) -> str:
    return dt.replace(microsecond=0).isoformat() + "Z"
