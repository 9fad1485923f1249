"""Vector cache: tile vectors per (image SHA-256, tiling parameters, embedder id), computed once."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import Embedding, Tile
from pipeline.embed import Embedder
from pipeline.repo import utcnow
from pipeline.tiling import TilingParams, tile_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileVectors:
    """The tiles of one image: vectors (n, d), boxes (n, 4) and mirrored flags (n,)."""

    sha256: str
    vectors: np.ndarray
    boxes: np.ndarray
    mirrored: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


def embed_tiles(image: Image.Image, params: TilingParams, embedder: Embedder) -> TileVectors:
    """Tile and embed an image in memory, without the cache (for one-off queries and eval)."""
    cuts = tile_image(image, params)
    vectors = embedder.embed([c.image for c in cuts]) if cuts else np.zeros((0, embedder.dim), np.float32)
    boxes = np.array([c.box for c in cuts], dtype=np.int32).reshape(-1, 4)
    return TileVectors("", vectors.astype(np.float32), boxes, np.array([c.mirrored for c in cuts], dtype=bool))


def _vector_file(home: Path, embedder_id: str, tiling: str, sha256: str) -> Path:
    space = hashlib.sha256(f"{embedder_id}|{tiling}".encode()).hexdigest()[:12]
    return home / "vectors" / space / sha256[:2] / f"{sha256}.npy"


@dataclass(frozen=True)
class CachedTiles:
    """Where an image's cached tile vectors lie, with their tiles: what a worker process needs to
    load them without a database session."""

    sha256: str
    path: Path
    boxes: np.ndarray
    mirrored: np.ndarray

    def load(self) -> TileVectors:
        return TileVectors(self.sha256, np.load(self.path), self.boxes, self.mirrored)


def cached_tiles(s: Session, home: Path, sha256: str, params: TilingParams, embedder: Embedder) -> CachedTiles | None:
    """The cache entry of an image's tile vectors, or None when it was never embedded this way."""
    row = s.scalar(
        select(Embedding).where(Embedding.image_sha256 == sha256, Embedding.tiling == params.key, Embedding.embedder == embedder.id)
    )
    if row is None:
        return None
    path = home / row.vectors_path
    if not path.exists():
        log.warning("vector file %s is missing; embedding %s again", path, sha256[:12])
        return None
    tiles = row.tiles
    boxes = np.array([[t.x0, t.y0, t.x1, t.y1] for t in tiles], dtype=np.int32).reshape(-1, 4)
    mirrored = np.array([t.mirrored for t in tiles], dtype=bool)
    return CachedTiles(sha256, path, boxes, mirrored)


def cached(s: Session, home: Path, sha256: str, params: TilingParams, embedder: Embedder) -> TileVectors | None:
    """The cached tile vectors, or None when this image was never embedded this way."""
    entry = cached_tiles(s, home, sha256, params, embedder)
    return entry.load() if entry is not None else None


def embed_image(s: Session, home: Path, sha256: str, image: Image.Image, params: TilingParams, embedder: Embedder) -> tuple[TileVectors, bool]:
    """Tile and embed ``image`` unless cached; return its vectors and whether they were computed."""
    hit = cached(s, home, sha256, params, embedder)
    if hit is not None:
        return hit, False
    tv = embed_tiles(image, params, embedder)
    vectors = tv.vectors
    if not np.isfinite(vectors).all():
        raise ValueError(f"embedder {embedder.id} produced non-finite vectors for {sha256}")
    path = _vector_file(home, embedder.id, params.key, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, vectors.astype(np.float32))
    tmp.replace(path)
    row = s.scalar(
        select(Embedding).where(Embedding.image_sha256 == sha256, Embedding.tiling == params.key, Embedding.embedder == embedder.id)
    )
    if row is None:
        row = Embedding(image_sha256=sha256, tiling=params.key, embedder=embedder.id, n_tiles=len(tv), vectors_path=str(path.relative_to(home)), created_at=utcnow())
        s.add(row)
        s.flush()
    else:  # the vector file had gone missing: rewrite the tiles too
        for t in list(row.tiles):
            s.delete(t)
        s.flush()
        row.n_tiles = len(tv)
    for i, (box, mirrored) in enumerate(zip(tv.boxes.tolist(), tv.mirrored.tolist())):
        s.add(Tile(embedding_id=row.id, idx=i, x0=box[0], y0=box[1], x1=box[2], y1=box[3], mirrored=mirrored))
    s.flush()
    return TileVectors(sha256, vectors, tv.boxes, tv.mirrored), True
