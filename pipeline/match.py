"""Matching: search a suspect image's tiles in a client's gallery index, then verify candidates."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from pipeline.index import TileIndex
from pipeline.tilecache import TileVectors
from pipeline.verify import Box, Verification, covered_share, verify_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchParams:
    """Knobs of the matcher (see docs/MATCHING.md)."""

    #: Gallery tiles retrieved per query tile.
    k: int = 8
    #: Lowest tile cosine that makes a gallery image a candidate.
    candidate_score: float = 0.55
    #: At most this many candidate gallery images are verified per suspect image.
    max_candidates: int = 5
    #: RANSAC inliers needed for a verified copy.
    min_inliers: int = 12
    #: A match whose protected region is at least this much client template is not a finding.
    template_share: float = 0.6


@dataclass
class Candidate:
    """A gallery image some query tiles resemble, with the tile pairs that say so."""

    gallery_id: int
    score: float
    mirrored: bool
    pairs: list[tuple[Box, Box, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Match:
    """A gallery image ranked for one suspect image.

    ``score`` is comparable across queries (it rests on verified geometry, not on the raw tile
    cosine, whose scale depends on the query); ``cosine`` is the best tile similarity that made it
    a candidate; ``verification`` is None when the pair was not checked.
    """

    gallery_id: int
    score: float
    cosine: float
    verification: Verification | None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.score > 0.0


def verified_score(v: Verification, min_inliers: int) -> float:
    """Map a verification to [0, 1), the same scale for every query and client.

    0 when rejected or below ``min_inliers``; otherwise the geometric evidence
    1 - exp(-inliers / 30), times how well the aligned pixels agree: a correlation factor
    (0 at ``CORRELATION_FLOOR``, 1 from ``CORRELATION_FULL``) and a colour factor (1 for no
    colour-mismatched pixels, 0 at ``COLOUR_MISMATCH_LIMIT``).
    """
    if not v.ok or v.inliers < min_inliers:
        return 0.0
    geometry = 1.0 - np.exp(-v.inliers / 30.0)
    corr = np.clip((v.correlation - CORRELATION_FLOOR) / (CORRELATION_FULL - CORRELATION_FLOOR), 0.0, 1.0)
    colour = max(0.0, 1.0 - v.colour_mismatch / COLOUR_MISMATCH_LIMIT)
    return float(geometry * corr * colour)


#: Aligned-lightness correlation below which a pair is not a copy, and from which it fully is.
CORRELATION_FLOOR, CORRELATION_FULL = 0.6, 0.85
#: Share of colour-mismatched pixels at which a verified region scores 0 (another colour variant).
COLOUR_MISMATCH_LIMIT = 0.15


def candidates(query: TileVectors, index: TileIndex, params: MatchParams) -> list[Candidate]:
    """Gallery images ranked by their best tile score against any query tile (either orientation)."""
    if len(query) == 0 or len(index) == 0:
        return []
    scores, rows = index.search(query.vectors, params.k)
    best: dict[tuple[int, bool], Candidate] = {}
    for qi in range(len(query)):
        mirrored = bool(query.mirrored[qi])
        qbox = tuple(int(v) for v in query.boxes[qi])
        for sc, row in zip(scores[qi], rows[qi]):
            if row < 0 or sc < params.candidate_score:
                continue
            gid = int(index.owners[row])
            cand = best.setdefault((gid, mirrored), Candidate(gid, float(sc), mirrored))
            cand.score = max(cand.score, float(sc))
            cand.pairs.append((qbox, tuple(int(v) for v in index.boxes[row]), float(sc)))
    # One candidate per gallery image: the orientation that scored higher.
    per_image: dict[int, Candidate] = {}
    for cand in best.values():
        if cand.gallery_id not in per_image or cand.score > per_image[cand.gallery_id].score:
            per_image[cand.gallery_id] = cand
    return sorted(per_image.values(), key=lambda c: -c.score)


def _union(boxes: list[Box], size: tuple[int, int], margin: float) -> Box:
    arr = np.array(boxes)
    x0, y0 = arr[:, 0].min(), arr[:, 1].min()
    x1, y1 = arr[:, 2].max(), arr[:, 3].max()
    m = int(margin * (x1 - x0))
    return (int(max(0, x0)), int(max(0, y0 - m)), int(min(size[0], x1)), int(min(size[1], y1 + m)))


def rank_gallery(
    query_image: Image.Image,
    query: TileVectors,
    index: TileIndex,
    load_gallery: Callable[[int], Image.Image],
    params: MatchParams = MatchParams(),
    *,
    top: int = 10,
) -> list[Match]:
    """Up to ``top`` distinct gallery images for this query, best first.

    The first ``params.max_candidates`` candidates by tile cosine are verified; verified ones
    rank by their verified score, all others follow by cosine with score 0.
    """
    ranked: list[Match] = []
    for i, cand in enumerate(candidates(query, index, params)[:top]):
        v = None
        if i < params.max_candidates:
            v = _verify(query_image, cand, load_gallery(cand.gallery_id))
            log.debug("candidate gallery=%d cosine=%.3f mirrored=%s inliers=%d corr=%.3f colour=%.3f", cand.gallery_id, cand.score, cand.mirrored, v.inliers, v.correlation, v.colour_mismatch)
        score = verified_score(v, params.min_inliers) if v else 0.0
        if score > 0 and covered_share(v.gallery_box, index.template_boxes(cand.gallery_id)) >= params.template_share:
            log.debug("gallery %d: matched region %s is the client's page template", cand.gallery_id, v.gallery_box)
            score = 0.0
        ranked.append(Match(cand.gallery_id, score, cand.score, v))
    return sorted(ranked, key=_rank_key)


def _rank_key(m: Match) -> tuple:
    v = m.verification
    return (-m.score, -(v.inliers * max(v.correlation, 0.0) if v else 0.0), -m.cosine)


def explain_away(matches: list[Match], contained: float = 0.85) -> list[Match]:
    """Drop matches whose suspect region lies inside the region of a better match.

    A page copied whole also contains the protected product photos and the client's template
    that other gallery images share; the best explanation (the whole page) is kept.
    """
    kept: list[Match] = []
    for m in sorted(matches, key=_rank_key):
        box = m.verification.query_box if m.verification else None
        if box and any(covered_share(box, [k.verification.query_box]) >= contained for k in kept):
            continue
        kept.append(m)
    return kept


def _verify(query_image: Image.Image, cand: Candidate, gallery_image: Image.Image) -> Verification:
    strong = [p for p in cand.pairs if p[2] >= cand.score - 0.1]
    qreg = _union([p[0] for p in strong], query_image.size, 0.25)
    greg = _union([p[1] for p in strong], gallery_image.size, 0.25)
    return verify_pair(query_image, gallery_image, query_region=qreg, gallery_region=greg, mirrored=cand.mirrored)


def match_image(
    query_image: Image.Image,
    query: TileVectors,
    index: TileIndex,
    load_gallery: Callable[[int], Image.Image],
    params: MatchParams = MatchParams(),
) -> list[Match]:
    """Verified copies of gallery images in ``query_image``, best first."""
    ranked = rank_gallery(query_image, query, index, load_gallery, params, top=params.max_candidates)
    return explain_away([m for m in ranked if m.verified])
