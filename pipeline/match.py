"""Matching: search a suspect image's tiles in a client's gallery index, then verify candidates."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from pipeline.index import TileIndex
from pipeline.local import LocalFeatures, VoteIndex, Votes, extract, is_page, mirrored as mirror_features
from pipeline.tilecache import TileVectors
from pipeline.verify import Box, Pixels, Verification, covered_share, verify_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchParams:
    """Knobs of the matcher (see docs/MATCHING.md)."""

    #: Gallery tiles retrieved per query tile.
    k: int = 8
    #: Lowest tile cosine that makes a gallery image a candidate.
    candidate_score: float = 0.55
    #: At most this many candidate gallery images (by local-feature votes, then by tile
    #: similarity) are verified per suspect image, plus ``extra_tile_candidates`` by tiles only.
    max_candidates: int = 6
    extra_tile_candidates: int = 2
    #: Local-feature votes a gallery image needs to be a candidate, absolutely and as a share of
    #: the most-voted image's.
    min_votes: int = 4
    relative_votes: float = 0.05
    #: When none of the candidates verifies, this many more voted images (and
    #: ``fallback_tile_candidates`` more by tiles) are checked; once more (voted only) when those
    #: checks found the copied shot in another colour.
    fallback_candidates: int = 4
    fallback_tile_candidates: int = 2
    #: RANSAC inliers a fit needs for its pixels to be compared and the pair to score at all. A
    #: fit with 8-11 inliers scores at most 0.31 (the geometric factor), below the default report
    #: threshold: a pixel-exact but weak match (a zoomed crop of a low-texture product, 8 inliers
    #: at correlation 0.999) then ranks above unverified candidates without making a finding.
    min_inliers: int = 8
    #: A match whose protected region is at least this much client template is not a finding.
    template_share: float = 0.6
    #: A protected page region matched by this many distinct suspect images is boilerplate.
    boilerplate_images: int = 4


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
    (0 at ``CORRELATION_FLOOR``, 1 from ``CORRELATION_FULL``; stricter for detail pages) and a colour factor (1 up to
    ``COLOUR_MISMATCH_FREE`` colour-mismatched pixels, 0 from ``COLOUR_MISMATCH_LIMIT`` or when
    the region's tint turned) and,
    for protected photos, a whole-overlap factor (see ``DISAGREEMENT_FREE``).
    """
    if not v.ok or v.inliers < min_inliers:
        return 0.0
    geometry = 1.0 - np.exp(-v.inliers / 30.0)
    floor, full = (CORRELATION_FLOOR, CORRELATION_FULL) if v.photo else (PAGE_CORRELATION_FLOOR, PAGE_CORRELATION_FULL)
    corr = np.clip((v.correlation - floor) / (full - floor), 0.0, 1.0)
    colour = 0.0 if v.tint_turned else _ramp_down(v.colour_mismatch, COLOUR_MISMATCH_FREE, COLOUR_MISMATCH_LIMIT)
    # A copy of a photo reproduces all of it that it overlaps; a shot sharing only the model's
    # face or the background with the protected photo does not.
    # A copied part of a detail page reproduces every glyph; a part of another page in the same
    # template (a size chart with other numbers) disagrees at the digits.
    whole = (_ramp_down(v.disagreement, DISAGREEMENT_FREE, DISAGREEMENT_LIMIT) if v.photo
             else _ramp_down(v.edge_disagreement, EDGE_DISAGREEMENT_FREE, EDGE_DISAGREEMENT_LIMIT))
    return float(geometry * corr * colour * whole)


def _ramp_down(x: float, free: float, limit: float) -> float:
    """1 up to ``free``, falling linearly to 0 at ``limit``."""
    return float(np.clip(1.0 - (x - free) / (limit - free), 0.0, 1.0))


#: Aligned-lightness correlation below which a pair is not a copy, and from which it fully is.
CORRELATION_FLOOR, CORRELATION_FULL = 0.6, 0.85
#: The same for protected detail pages. A copied part of a page reproduces its pixels (resized
#: and recompressed, not rotated or recoloured: 0.996 or more on every copy of the bench sets),
#: while a part of another page in the same template (a size chart with other numbers, the brand
#: header above another product's title, a stock sentence on another background) correlates at
#: 0.87-0.99.
PAGE_CORRELATION_FLOOR, PAGE_CORRELATION_FULL = 0.985, 0.996
#: Share of colour-mismatched pixels up to which a region counts as the same colours, and at
#: which it scores 0 (another colour variant of the shot).
COLOUR_MISMATCH_FREE, COLOUR_MISMATCH_LIMIT = 0.05, 0.15
#: Share of a protected photo's textured pixels that may disagree where the copy overlaps it.
DISAGREEMENT_FREE, DISAGREEMENT_LIMIT = 0.3, 0.45
#: Share of the edge pixels of a matched detail-page region that may disagree (recompression,
#: resizing, a watermark: at most 0.037 on the 347 verified copies of the bench's type2 set), and
#: from which the region is another page's text in the same frame (0.14 for a decoy size chart
#: with other numbers).
EDGE_DISAGREEMENT_FREE, EDGE_DISAGREEMENT_LIMIT = 0.05, 0.10


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


class GallerySource(Protocol):
    """What matching needs of a client's gallery beyond its tile index."""

    def pixels(self, gallery_id: int) -> Pixels: ...

    def features(self, gallery_id: int) -> LocalFeatures: ...


@dataclass
class Query:
    """A suspect image with its tile vectors; local features are computed once, when needed."""

    image: Image.Image
    tiles: TileVectors
    _features: dict[bool, LocalFeatures] = field(default_factory=dict)
    _pixels: Pixels | None = None

    @property
    def pixels(self) -> Pixels:
        if self._pixels is None:
            self._pixels = Pixels.of(self.image)
        return self._pixels

    def features(self, mirrored: bool) -> LocalFeatures:
        if False not in self._features:
            self._features[False] = extract(self.image)
        if mirrored not in self._features:
            self._features[True] = mirror_features(self._features[False])
        return self._features[mirrored]


def rank_gallery(
    query: Query,
    index: TileIndex,
    gallery: GallerySource,
    votes: VoteIndex | None = None,
    params: MatchParams = MatchParams(),
    *,
    top: int = 10,
) -> list[Match]:
    """Up to ``top`` distinct gallery images for this query, best first.

    Candidates come from two searches: tile embeddings (global, per tile) and local-feature votes
    (robust to crops, banners and rotation). The first ``params.max_candidates`` are verified;
    verified ones rank by their verified score, all others follow with score 0.
    """
    by_tiles = {c.gallery_id: c for c in candidates(query.tiles, index, params)}
    voted: dict[int, tuple[int, bool]] = {}
    cast = votes.cast(query.features(False)) if votes is not None else None
    if cast is not None:
        for mirrored, counts in cast.counts.items():
            for gid, n in counts.items():
                if n >= params.min_votes and n > voted.get(gid, (0, False))[0]:
                    voted[gid] = (n, mirrored)
    # Images with a small share of the leader's votes are not worth a pairwise check: when the
    # query copies one of them, that one leads by far; the others share a few generic points.
    lead = max((n for n, _ in voted.values()), default=0)
    by_votes = [gid for gid, (n, _) in sorted(voted.items(), key=lambda kv: -kv[1][0]) if n >= params.relative_votes * lead]
    order = by_votes[: params.max_candidates]
    order += [gid for gid in by_tiles if gid not in order]
    budget = params.max_candidates + params.extra_tile_candidates
    ranked: list[Match] = []
    checked: set[int] = set()

    def check(gid: int) -> Match:
        cand = by_tiles.get(gid)
        cosine = cand.score if cand else 0.0
        mirrored = voted[gid][1] if gid in voted else cand.mirrored
        template = index.template_boxes(gid)
        if gid in voted:
            # The band where most votes landed; when its check fails, the next separate cluster
            # of votes (a line of text repeated elsewhere on the page can outvote the copied part),
            # then the other orientation if it has votes too (a symmetric pattern, such as a
            # speaker grille, votes for the mirrored image as much as for the upright one).
            other = not mirrored
            orientations = (mirrored, other) if cast.counts[other].get(gid, 0) >= params.min_votes else (mirrored,)
            tries = ((m, greg) for m in orientations
                     for greg in _vote_bands(query, gallery, gid, m, cast, template, params.min_votes))
            v = None  # when no check succeeds, the one that found most ranks the image
            for m, greg in tries:
                tried = verify_features(query.pixels, query.features(m), gallery.pixels(gid), gallery.features(gid),
                                        gallery_region=greg, min_inliers=params.min_inliers, template=template)
                if verified_score(tried, params.min_inliers) > 0:
                    v = tried
                    break
                if v is None or _evidence(tried) > _evidence(v):
                    v = tried
        else:
            v = _verify(query, gallery, gid, cand if cand and cand.mirrored == mirrored else None, mirrored, params.min_inliers,
                        template)
        log.debug("candidate gallery=%d votes=%s cosine=%.3f mirrored=%s inliers=%d corr=%.3f colour=%.3f",
                  gid, voted.get(gid, (0,))[0], cosine, mirrored, v.inliers, v.correlation, v.colour_mismatch)
        score = verified_score(v, params.min_inliers)
        if score > 0 and covered_share(v.gallery_box, template) >= params.template_share:
            log.debug("gallery %d: matched region %s is the client's page template", gid, v.gallery_box)
            score = 0.0
        checked.add(gid)
        return Match(gid, score, cosine, v)

    for i, gid in enumerate(order[: max(top, params.max_candidates)]):
        if i < budget:
            ranked.append(check(gid))
        else:
            cand = by_tiles.get(gid)
            ranked.append(Match(gid, 0.0, cand.score if cand else 0.0, None))
    # Nothing verified, yet more images were voted for: the leaders may be other colour variants
    # of a shot the query copies from a page further down the list. Look a little further, and
    # further again while the checks keep finding the shot in another colour (a gallery holding
    # the shot in many colours splits the votes between them: each keypoint outside the garment
    # has near-identical twins in every variant).
    # The first round also checks the next few images by tile similarity: a zoomed crop of a
    # nearly textureless product (a bare shoulder on plain fabric) gets its votes from the
    # copier's banner text, while its tiles still resemble the copied part.
    for round_ in range(2):
        if any(m.score > 0 for m in ranked):
            break
        more = [gid for gid in by_votes if gid not in checked][: params.fallback_candidates]
        if round_ == 0:
            more += [gid for gid in by_tiles if gid not in checked and gid not in more][: params.fallback_tile_candidates]
        ranked = [m for m in ranked if m.gallery_id not in more] + [check(gid) for gid in more]
        if not any(_other_colour(m.verification, params) for m in ranked):
            break
    return sorted(ranked, key=rank_key)[:top]


def _other_colour(v: Verification | None, params: MatchParams) -> bool:
    """The check aligned the shot (enough inliers, pixels correlated) but in another colour."""
    return (v is not None and v.ok and v.inliers >= params.min_inliers
            and v.colour_mismatch >= COLOUR_MISMATCH_LIMIT and v.correlation >= CORRELATION_FLOOR)


def _vote_bands(query: Query, gallery: GallerySource, gid: int, mirrored: bool, cast: Votes, template: list[Box],
                min_votes: int) -> list[Box | None]:
    """On a long protected page, the bands where the query's votes landed, best first; [None]
    (the whole image) for a photo.

    Matching a copied segment against all of a long page's keypoints drowns its matches in
    look-alikes from the rest of the page (the ratio test fails); the votes say where to look.
    Votes landing in the client's template are ignored when others exist. A band is the densest
    stretch of votes, grown to every stretch with a fair share of them that a copy of the
    query's height could reach, plus half a page width on each side. A second band is returned
    when the votes outside the first still form a cluster (at least ``min_votes``, and 30% of
    the first's peak).
    """
    gw, gh = gallery.pixels(gid).size
    if not is_page((gw, gh)):
        return [None]
    _, landed = cast.landed(mirrored, gid)
    landed = landed[landed >= 0]
    if len(landed) == 0:
        return [None]
    xy = gallery.features(gid).xy[landed]
    if template:
        t = np.asarray(template, dtype=np.float32).reshape(-1, 4)
        inside = ((xy[:, None, 0] >= t[None, :, 0]) & (xy[:, None, 0] < t[None, :, 2])
                  & (xy[:, None, 1] >= t[None, :, 1]) & (xy[:, None, 1] < t[None, :, 3])).any(axis=1)
        if not inside.all():
            xy = xy[~inside]
    bin_h = gw / 2
    counts = np.bincount((xy[:, 1] // bin_h).astype(int))
    qw, qh = query.image.size
    reach = qh * gw / qw * 1.7 / bin_h + 1  # a copy cropped to 60% of the width is 1.7x taller in page pixels
    bands: list[Box | None] = []
    first_peak = 0
    for _ in range(2):
        peak = int(counts.argmax())
        if bands and (counts[peak] < max(min_votes, 0.3 * first_peak)):
            break
        first_peak = first_peak or int(counts[peak])
        keep = [b for b in np.flatnonzero(counts >= max(2, 0.15 * counts[peak])) if abs(b - peak) <= reach] or [peak]
        bands.append((0, max(0, int((min(keep) - 0.5) * bin_h)), gw, min(gh, int((max(keep) + 1.5) * bin_h))))
        counts[min(keep): max(keep) + 1] = 0  # what the next band may use
        if not counts.any():
            break
    return bands


def _verify(query: Query, gallery: GallerySource, gid: int, cand: Candidate | None, mirrored: bool, min_inliers: int,
            template: Sequence[Box] = ()) -> Verification:
    """Verify one candidate: around the tile pairs that proposed it, or whole images."""
    g_pixels = gallery.pixels(gid)
    qreg = greg = None
    if cand is not None:
        strong = [p for p in cand.pairs if p[2] >= cand.score - 0.1]
        qreg = _union([p[0] for p in strong], query.image.size, 0.25)
        greg = _union([p[1] for p in strong], g_pixels.size, 0.25)
    return verify_features(query.pixels, query.features(mirrored), g_pixels, gallery.features(gid), query_region=qreg,
                           gallery_region=greg, min_inliers=min_inliers, template=template)


def _evidence(v: Verification | None) -> float:
    """How much a check that scored 0 still found (orders unverified candidates)."""
    return v.inliers * max(v.correlation, 0.0) if v else 0.0


def rank_key(m: Match) -> tuple:
    """Order of a query's matches: by score; those scoring 0 by what their check still found
    (:func:`_evidence`), then by tile cosine."""
    return (-m.score, -_evidence(m.verification), -m.cosine)


def explain_away(matches: list[Match], contained: float = 0.85) -> list[Match]:
    """Drop matches whose suspect region lies inside the region of a better match.

    A page copied whole also contains the protected product photos and the client's template
    that other gallery images share; the best explanation (the whole page) is kept.
    """
    kept: list[Match] = []
    for m in sorted(matches, key=rank_key):
        box = m.verification.query_box if m.verification else None
        if box and any(covered_share(box, [k.verification.query_box]) >= contained for k in kept):
            continue
        kept.append(m)
    return kept


def _same_region(a: Box, b: Box) -> bool:
    """Two matched regions are the same place: the smaller lies mostly in the larger, and is not
    a small part of it (a whole copied page contains a boilerplate box but is not one)."""
    small, large = sorted((a, b), key=lambda x: (x[2] - x[0]) * (x[3] - x[1]))
    area_small = (small[2] - small[0]) * (small[3] - small[1])
    area_large = (large[2] - large[0]) * (large[3] - large[1])
    inside = covered_share(small, [large])
    return inside >= 0.5 and inside * area_small >= 0.2 * area_large


def shows_region(m: Match, params: MatchParams = MatchParams()) -> bool:
    """Whether the pair shares a region pixel for pixel, whatever its score as a copy: what counts
    toward boilerplate. A stock size chart set in another page's frame scores low as a copy (its
    correlation is below the page ramp) but still shows where boilerplate sits."""
    v = m.verification
    return (v is not None and v.ok and v.inliers >= params.min_inliers and v.correlation >= CORRELATION_FULL
            and v.colour_mismatch < COLOUR_MISMATCH_LIMIT)


def frequent_regions(matches: list[tuple[int, Match]], min_images: int) -> dict[int, list[Box]]:
    """Regions of protected detail pages that many different suspect images match: boilerplate.

    ``matches`` pairs suspect image ids with their matches that show a shared region
    (:func:`shows_region`). A page region matched by at
    least ``min_images`` distinct suspect images (:func:`_same_region`) is content that many shops share, such as a size chart or a returns notice in the
    same font, and not a copy. Protected photos are exempt: a photo stolen by several shops on
    one day is still a photo.
    """
    by_gallery: dict[int, list[tuple[int, Box]]] = {}
    for image_id, m in matches:
        v = m.verification
        if v is not None and v.gallery_box and not v.photo:
            by_gallery.setdefault(m.gallery_id, []).append((image_id, v.gallery_box))
    frequent: dict[int, list[Box]] = {}
    for gid, items in by_gallery.items():
        for image_id, box in items:
            others = {i for i, b in items if i != image_id and _same_region(box, b)}
            if len(others) + 1 >= min_images:
                frequent.setdefault(gid, []).append(box)
    return frequent


def match_image(query: Query, index: TileIndex, gallery: GallerySource, votes: VoteIndex | None, params: MatchParams = MatchParams()) -> list[Match]:
    """Verified copies of gallery images in the query, best first."""
    return copies(rank_gallery(query, index, gallery, votes, params, top=checked_matches(params)))


def copies(ranked: list[Match]) -> list[Match]:
    """The verified copies among a query's ranked matches, explained away (:func:`explain_away`)."""
    return explain_away([m for m in ranked if m.verified])


def checked_matches(params: MatchParams) -> int:
    """How many ranked matches can carry a verification (the fallback runs up to twice)."""
    return params.max_candidates + params.extra_tile_candidates + params.fallback_tile_candidates + 2 * params.fallback_candidates
