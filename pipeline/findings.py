"""Findings: verified matches become one row per (client, suspect image, protected image)."""
from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import Finding, FindingSighting
from pipeline.match import Match

log = logging.getLogger(__name__)

#: Review states that keep a finding out of later reports (until the suspect image changes,
#: which makes it another image and so another finding).
SUPPRESSED = ("dismissed", "authorised")


def upsert_finding(s: Session, *, client_id: int, image_id: int, page_id: int, run_id: int, seen: date, match: Match) -> tuple[Finding, bool]:
    """Create or refresh the finding for this pair and record the sighting; idempotent per run."""
    v = match.verification
    f = s.scalar(
        select(Finding).where(Finding.client_id == client_id, Finding.image_id == image_id, Finding.gallery_image_id == match.gallery_id)
    )
    created = f is None
    if created:
        f = Finding(
            client_id=client_id, image_id=image_id, gallery_image_id=match.gallery_id, status="new",
            first_seen=seen, last_seen=seen, first_run_id=run_id, last_run_id=run_id, page_id=page_id, score=match.score,
        )
        s.add(f)
    else:
        if seen < f.first_seen:
            f.first_seen, f.first_run_id = seen, run_id
        if seen >= f.last_seen:
            f.last_seen, f.last_run_id, f.page_id = seen, run_id, page_id
    f.score = match.score
    f.suspect_box = list(v.query_box or ())
    f.gallery_box = list(v.gallery_box or ())
    f.overlap = v.overlap
    f.mirrored = v.mirrored
    f.evidence = {"inliers": v.inliers, "matches": v.matches, "scale": round(v.scale, 4), "cosine": round(match.cosine, 4), "colour_mismatch": round(v.colour_mismatch, 4), "correlation": round(v.correlation, 4)}
    s.flush()
    seen_row = s.scalar(
        select(FindingSighting).where(FindingSighting.finding_id == f.id, FindingSighting.page_id == page_id, FindingSighting.run_id == run_id)
    )
    if seen_row is None:
        s.add(FindingSighting(finding_id=f.id, page_id=page_id, run_id=run_id))
        s.flush()
    return f, created
