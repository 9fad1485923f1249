"""Client galleries: adding protected images and keeping each client's tile index current."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline import images
from pipeline.config import Settings
from pipeline.db import Client, GalleryImage
from pipeline.embed import Embedder
from pipeline.index import TileIndex, fingerprint
from pipeline.repo import add_gallery_image, get_client
from pipeline.store import ContentStore
from pipeline.tilecache import embed_image
from pipeline.tiling import GALLERY_TILING, TilingParams

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def iter_image_files(paths: list[Path]) -> list[Path]:
    """Image files named directly or found below the given folders, in sorted order."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return found


def add_images(s: Session, settings: Settings, client_slug: str, paths: list[Path]) -> dict[str, int]:
    """Store the files and add them to the client's gallery; bad files are reported, not added."""
    client = get_client(s, client_slug)
    store = ContentStore(settings.store_dir)
    counts = {"added": 0, "already_present": 0, "bad": 0}
    for f in iter_image_files(paths):
        data = f.read_bytes()
        try:
            im = images.decode(data, max_pixels=settings.max_image_pixels)
        except images.BadImage as e:
            log.warning("not added to %s's gallery: %s: %s", client_slug, f, e.reason)
            counts["bad"] += 1
            continue
        sha, _ = store.put(data)
        _, new = add_gallery_image(s, client, sha, f.name, *im.size)
        counts["added" if new else "already_present"] += 1
    log.info("gallery %s: %s", client_slug, counts)
    return counts


def index_path(settings: Settings, client: Client, embedder: Embedder, params: TilingParams) -> Path:
    safe_model = "".join(c if c.isalnum() or c in "-." else "_" for c in embedder.id)
    return settings.index_dir / client.slug / f"{safe_model}--{params.key}.npz"


def client_index(s: Session, settings: Settings, client: Client, embedder: Embedder, params: TilingParams = GALLERY_TILING) -> TileIndex:
    """The client's gallery tile index, rebuilt only when the gallery, tiling or model changed."""
    rows = s.scalars(select(GalleryImage).where(GalleryImage.client_id == client.id).order_by(GalleryImage.id)).all()
    fp = fingerprint([f"{g.id}:{g.sha256}" for g in rows] + [params.key, embedder.id])
    path = index_path(settings, client, embedder, params)
    if path.exists():
        idx = TileIndex.load(path)
        if idx.fingerprint == fp:
            return idx
    store = ContentStore(settings.store_dir)
    vecs, owners, boxes = [], [], []
    for g in rows:
        im = images.decode(store.path(g.sha256), max_pixels=settings.max_image_pixels)
        tv, _ = embed_image(s, settings.home, g.sha256, im, params, embedder)
        vecs.append(tv.vectors)
        owners.append(np.full(len(tv), g.id, dtype=np.int64))
        boxes.append(tv.boxes)
    dim = embedder.dim
    idx = TileIndex(
        np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32),
        np.concatenate(owners) if owners else np.zeros(0, np.int64),
        np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int32),
        fp,
    )
    idx.save(path)
    log.info("indexed %d tiles of %d gallery images for %s", len(idx), len(rows), client.slug)
    return idx
