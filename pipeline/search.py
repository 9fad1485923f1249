"""Gallery search (the study's tool): the most similar protected images of one client for an uploaded image."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.config import Settings
from pipeline.db import Client, GalleryImage
from pipeline.embed import Embedder, get_embedder
from pipeline.gallery import client_gallery
from pipeline.match import MatchParams, Query, rank_gallery
from pipeline.tilecache import TileVectors
from pipeline.tiling import QUERY_TILING, tile_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One ranked gallery image of the client, with the matched regions (empty when unverified)."""

    rank: int
    gallery_id: int
    label: str
    sha256: str
    score: float
    cosine: float
    inliers: int
    query_box: list[int]
    gallery_box: list[int]
    mirrored: bool


def query_tiles(im: Image.Image, embedder: Embedder) -> TileVectors:
    """Tile and embed an uploaded image (not cached: uploads are not stored)."""
    cuts = tile_image(im, QUERY_TILING)
    vecs = embedder.embed([c.image for c in cuts]) if cuts else np.zeros((0, embedder.dim), np.float32)
    boxes = np.array([c.box for c in cuts], np.int32).reshape(-1, 4)
    return TileVectors("upload", vecs, boxes, np.array([c.mirrored for c in cuts], bool))


def search_gallery(s: Session, settings: Settings, client: Client, query: Image.Image, top: int = 10, embedder: Embedder | None = None) -> list[Hit]:
    """Up to ``top`` distinct gallery images of ``client`` for ``query``, best first; only this client's gallery is read."""
    embedder = embedder or get_embedder(settings.embedder, weights_dir=settings.weights_dir)
    if s.scalar(select(GalleryImage.id).where(GalleryImage.client_id == client.id).limit(1)) is None:
        return []
    gallery = client_gallery(s, settings, client, embedder)
    params = MatchParams(max_candidates=top, candidate_score=-1.0)
    ranked = rank_gallery(Query(query, query_tiles(query, embedder)), gallery.index, gallery, gallery.votes, params, top=top)
    hits = []
    for rank, m in enumerate((m for m in ranked if m.gallery_id in gallery.rows), 1):
        v = m.verification
        g = gallery.rows[m.gallery_id]
        hits.append(Hit(
            rank=rank, gallery_id=g.id, label=g.label, sha256=g.sha256, score=round(m.score, 4), cosine=round(m.cosine, 4),
            inliers=v.inliers if v else 0, query_box=[int(x) for x in (v.query_box or ())] if v else [],
            gallery_box=[int(x) for x in (v.gallery_box or ())] if v else [], mirrored=bool(v and v.mirrored),
        ))
    log.info("search in %s: %d hits", client.slug, len(hits))
    return hits
