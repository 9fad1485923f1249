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
from pipeline.verify import PixelCache, shared_regions

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


class ClientGallery:
    """A client's gallery as matching sees it: tile index, local-feature votes, images, features."""

    def __init__(self, settings: Settings, client_slug: str, rows: list[GalleryImage], index: TileIndex | None, cache_size: int = 64) -> None:
        from collections import OrderedDict

        from pipeline.local import VoteIndex, cached_extract

        self.settings, self.index, self.client_slug = settings, index, client_slug
        self.rows = {g.id: g for g in rows}
        self._store = ContentStore(settings.store_dir)
        self._images: OrderedDict[int, object] = OrderedDict()
        self._cache_size = cache_size
        self._features = {g.id: cached_extract(settings.home, g.sha256, lambda g=g: self.image(g.id)) for g in rows}
        self.votes = VoteIndex.build(self._features)
        self.pixels = PixelCache(self.image)

    def image(self, gallery_id: int):
        if gallery_id in self._images:
            self._images.move_to_end(gallery_id)
            return self._images[gallery_id]
        im = images.decode(self._store.path(self.rows[gallery_id].sha256), max_pixels=self.settings.max_image_pixels)
        self._images[gallery_id] = im
        if len(self._images) > self._cache_size:
            self._images.popitem(last=False)
        return im

    def features(self, gallery_id: int):
        return self._features[gallery_id]

    def remember_boilerplate(self, found: dict[int, list]) -> dict[int, list]:
        """Add newly found boilerplate regions to those of earlier runs (kept per protected image,
        by content hash, beside the client's index) and return them all by gallery id."""
        import json

        path = self.settings.index_dir / self.client_slug / "boilerplate.json"
        known: dict[str, list] = json.loads(path.read_text()) if path.exists() else {}
        for gid, boxes in found.items():
            sha = self.rows[gid].sha256
            known[sha] = sorted({tuple(b) for b in known.get(sha, [])} | {tuple(b) for b in boxes})
        if found:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(path)
            log.info("%s: boilerplate regions on %d protected pages", self.client_slug, len(found))
        by_sha = {g.sha256: gid for gid, g in self.rows.items()}
        return {by_sha[sha]: [tuple(b) for b in boxes] for sha, boxes in known.items() if sha in by_sha}


def client_gallery(s: Session, settings: Settings, client: Client, embedder: Embedder) -> ClientGallery:
    """Everything needed to match against one client's gallery, built or loaded from caches."""
    rows = s.scalars(select(GalleryImage).where(GalleryImage.client_id == client.id).order_by(GalleryImage.id)).all()
    gallery = ClientGallery(settings, client.slug, list(rows), None)
    # When the tile index must be rebuilt, its template search reuses the gallery's vote index.
    gallery.index = client_index(s, settings, client, embedder, votes=gallery.votes)
    return gallery


def client_index(s: Session, settings: Settings, client: Client, embedder: Embedder, params: TilingParams = GALLERY_TILING,
                 votes=None) -> TileIndex:
    """The client's gallery tile index, rebuilt only when the gallery, tiling or model changed.

    ``votes``, the gallery's :class:`pipeline.local.VoteIndex` when the caller has it, saves the
    template search building one of its own."""
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
    from pipeline.local import cached_extract, is_page

    dim = embedder.dim
    by_id = {g.id: g for g in rows}
    load = lambda gid: images.decode(store.path(by_id[gid].sha256), max_pixels=settings.max_image_pixels)  # noqa: E731
    pages = [g.id for g in rows if is_page((g.width, g.height))]
    page_features = lambda gid: cached_extract(settings.home, by_id[gid].sha256, lambda: load(gid))  # noqa: E731
    idx = TileIndex(
        np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32),
        np.concatenate(owners) if owners else np.zeros(0, np.int64),
        np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int32),
        fp,
        template_regions(pages, page_features, PixelCache(load), votes=votes),
    )
    idx.save(path)
    log.info("indexed %d tiles of %d gallery images for %s (%d template regions)", len(idx), len(rows), client.slug, len(idx.templates))
    return idx


def _page_band(box, size: tuple[int, int], pad: float = 0.05) -> tuple[int, int, int, int]:
    """A template region as the full-width band of the page it spans, padded by ``pad`` of the
    page width above and below: a header or notice spans the page, but its keypoints (the box
    found) stop short of its plain margins."""
    w, h = size
    m = int(pad * w)
    return (0, max(0, int(box[1]) - m), w, min(h, int(box[3]) + m))


#: What the per-page template search reads (set by :func:`template_regions` before it forks).
_TEMPLATE_WORK: dict = {}


def template_regions(
    pages: list[int],
    features,
    pixels,
    neighbours: int = 3,
    min_correlation: float = 0.85,
    similarity: float = 0.9,
    k: int = 8,
    workers: int = 1,
    votes=None,
) -> np.ndarray:
    """Regions a client's detail pages share with each other: their template.

    The strongest descriptors of all pages go into one index; each page's descriptors find their
    near-exact twins (RootSIFT similarity at least ``similarity``) on other pages. Each page is
    paired with the ``neighbours`` pages holding most twins (a pair both pages choose is compared
    once), and the two are compared band by band on those twins only
    (:func:`pipeline.verify.shared_regions`); every region they share pixel for pixel (aligned
    correlation at least ``min_correlation``, no colour change) is recorded on both pages as rows
    (gallery id, x0, y0, x1, y1): the full-width band it spans, slightly padded.
    ``features`` and ``pixels`` map a gallery id to its local features and its
    :class:`pipeline.verify.Pixels` (or image). Pages are searched and compared in ``workers``
    forked processes. ``votes``, the gallery's :class:`pipeline.local.VoteIndex` when already
    built (it holds the same strongest descriptors), saves building a second index.
    """
    from pipeline.local import VOTE_PER_BLOCK, VoteIndex
    from pipeline.parallel import fork_map

    if len(pages) < 2:
        return np.zeros((0, 5), np.int64)
    strongest = {gid: features(gid).strongest(VOTE_PER_BLOCK) for gid in pages}
    index = votes if votes is not None else VoteIndex.build({g: features(g) for g in pages})
    _TEMPLATE_WORK.update(index=index, strongest=strongest, page_ids=np.array(pages, np.int64), features=features, pixels=pixels,
                          neighbours=neighbours, min_correlation=min_correlation, similarity=similarity, k=k)
    rows: list[tuple[int, ...]] = []
    try:
        pairs: dict[tuple[int, int], tuple[int, int, np.ndarray]] = {}
        for a, found in fork_map(_page_twins, pages, workers):
            for b, twins in found:
                key = (min(a, b), max(a, b))
                if key not in pairs or len(twins) > len(pairs[key][2]):
                    pairs[key] = (a, b, twins)
        log.info("templates: %d pages, %d pairs to compare", len(pages), len(pairs))
        for n, found in enumerate(fork_map(_pair_template, list(pairs.values()), workers), 1):
            rows.extend(found)
            if n % 100 == 0 or n == len(pairs):
                log.info("templates: %d/%d pairs compared, %d shared regions", n, len(pairs), len(rows) // 2)
    finally:
        _TEMPLATE_WORK.clear()
    return np.array(rows, np.int64).reshape(-1, 5)


def _page_twins(a: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """Page ``a``'s ``neighbours`` pages holding most of its near-exact twins (at least 12), each
    with the twins as rows (keypoint on ``a``, keypoint on the other page, descriptor distance)."""
    w = _TEMPLATE_WORK
    index, strongest = w["index"], w["strongest"]
    sims, hits = index.search(w["features"](a).desc[strongest[a]], w["k"])
    row, col = np.nonzero(hits >= 0)  # row by row, nearest first: the order twins are listed in
    hit, sim = hits[row, col], sims[row, col]
    other = index.owners[hit]
    keep = (other != a) & np.isin(other, w["page_ids"]) & (sim >= w["similarity"])
    row, hit, sim, other = row[keep], hit[keep], sim[keep], other[keep]
    twins = np.stack([strongest[a][row], index.keypoints[hit], np.sqrt(np.maximum(0.0, 2 - 2 * sim))], axis=1).astype(np.float64)
    # Most twins first; among equals, the page met first.
    found, first, counts = np.unique(other, return_index=True, return_counts=True)
    best = np.lexsort((first, -counts))[: w["neighbours"]]
    return a, [(int(found[i]), twins[other == found[i]]) for i in best if counts[i] >= 12]


def _pair_template(pair: tuple[int, int, np.ndarray]) -> list[tuple[int, ...]]:
    """Template rows found by comparing page ``a``, band by band, with page ``b`` on their twins."""
    a, b, arr = pair
    w = _TEMPLATE_WORK
    features, pixels = w["features"], w["pixels"]
    matches = (arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].astype(np.float32))
    pa, pb = pixels(a), pixels(b)
    rows: list[tuple[int, ...]] = []
    for v in shared_regions(pa, pb, features=(features(a), features(b)), matches=matches):
        if v.correlation >= w["min_correlation"] and v.colour_mismatch < 0.05:
            rows.append((a, *_page_band(v.query_box, pa.size)))
            rows.append((b, *_page_band(v.gallery_box, pb.size)))
    return rows
