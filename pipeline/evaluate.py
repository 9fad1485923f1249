"""`copywatch eval`: rank a dataset's queries against its gallery and score the rankings."""
from __future__ import annotations

import csv
import json
import logging
import math
import mmap
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import images
from pipeline.embed import Embedder
from pipeline.gallery import iter_image_files
from pipeline.index import TileIndex
from pipeline.local import LocalFeatures, VoteIndex, extract, is_page
from pipeline.match import Match, MatchParams, Query, explain_away, frequent_regions, rank_gallery, rank_key, shows_region
from pipeline.gallery import template_regions
from pipeline.verify import WORK_WIDTH, PixelCache, Pixels, covered_share
from pipeline.parallel import cpu_workers, fork_map, forkable_faiss
from pipeline.metrics import Scored, at_threshold, micro_ap, rank_k, recall_at_precision
from pipeline.tilecache import embed_tiles
from pipeline.tiling import GALLERY_TILING, QUERY_TILING

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    root: Path
    gallery: list[str]
    queries: list[str]
    truth: dict[str, set[str]]

    @classmethod
    def load(cls, root: Path) -> "Dataset":
        root = Path(root)
        for part in ("gallery", "queries", "truth.csv"):
            if not (root / part).exists():
                raise FileNotFoundError(f"{root} is not a dataset: {part} is missing (need gallery/, queries/, truth.csv)")
        rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
        gallery = [rel(p) for p in iter_image_files([root / "gallery"])]
        queries = [rel(p) for p in iter_image_files([root / "queries"])]
        truth: dict[str, set[str]] = {q: set() for q in queries}
        known_g, known_q = set(gallery), set(queries)
        with open(root / "truth.csv", newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                q, g = row.get("query"), row.get("gallery")
                if q not in known_q or g not in known_g:
                    raise ValueError(f"truth.csv line {n}: {q!r} or {g!r} is not an image of the dataset")
                truth[q].add(g)
        return cls(root, gallery, queries, truth)


class _Gallery:
    """The dataset's gallery as matching sees it: decoded images in a bounded LRU (so big
    galleries fit in memory) and local features computed once per image."""

    def __init__(self, root: Path, names: list[str], size: int = 48) -> None:
        self.root, self.names, self.size = root, names, size
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()
        self._features: dict[int, LocalFeatures] = {}
        # Room for a bench set's whole gallery (450 images, 150 of them long pages: about 2 GB),
        # shared by the forked query workers.
        self.pixels = PixelCache(self.image, budget_bytes=3_000_000_000)

    def features(self, gid: int) -> LocalFeatures:
        if gid not in self._features:
            self._features[gid] = extract(self.image(gid))
        return self._features[gid]

    def image(self, gid: int) -> Image.Image:
        if gid in self._cache:
            self._cache.move_to_end(gid)
            return self._cache[gid]
        im = images.decode(self.root / self.names[gid])
        self._cache[gid] = im
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return im


def _without_boilerplate(m: Match, frequent: dict[int, list], params: MatchParams) -> Match:
    if m.verified and covered_share(m.verification.gallery_box, frequent.get(m.gallery_id, [])) >= params.template_share:
        return replace(m, score=0.0)
    return m


def read_scored(eval_dir: Path) -> tuple[str, list[Scored], dict[str, set[str]]]:
    """An eval's output folder as (dataset path, scored rows, truth), for threshold calibration."""
    metrics = json.loads((Path(eval_dir) / "metrics.json").read_text(encoding="utf-8"))
    if "dataset" not in metrics:
        raise ValueError(f"{eval_dir}/metrics.json does not name its dataset: re-run copywatch eval")
    ds = Dataset.load(Path(metrics["dataset"]))
    with open(Path(eval_dir) / "rankings.csv", newline="", encoding="utf-8") as f:
        rows = [Scored(r["query"], r["gallery"], float(r["score"])) for r in csv.DictReader(f)]
    return metrics["dataset"], rows, ds.truth


def _as_reported(ranked: list[Match]) -> list[Match]:
    """The ranking as the daily run would report it: a verified match whose suspect region lies
    inside a better match's (:func:`explain_away`) is no finding, and ranks with score 0.

    Matches of equal score keep the matcher's order (:func:`pipeline.match.rank_key`): among
    unverified candidates, the check that found most evidence first, not the best tile cosine."""
    kept = {id(m) for m in explain_away([m for m in ranked if m.verified])}
    out = [m if id(m) in kept or not m.verified else replace(m, score=0.0) for m in ranked]
    return sorted(out, key=rank_key)


#: What forked eval workers read (set by :func:`evaluate` just before it starts them).
_WORK: dict = {}


class SharedPixels:
    """The gallery's pixels in one anonymous shared mapping, made before the workers fork.

    The worker that prepares an image writes its pixels into the image's slot and hands back only
    their shape; the parent, and the query workers forked later, read them in place. Handing the
    arrays back through the pool's pipe instead (about 10 MB a detail page) cost 3.5 s of the
    type2 gallery's 31 s (2026-12-05). Slots are sized from the image headers, for either
    orientation (decoding may turn an image by its EXIF tag); the mapping takes memory only where
    written. An image whose pixels do not fit its slot (or whose header could not be read) is
    handed back the old way.
    """

    def __init__(self, paths: list[Path], max_w: int = WORK_WIDTH) -> None:
        self.offsets, self.slots = [], []
        total = 0
        for path in paths:
            self.offsets.append(total)
            self.slots.append(_slot_bytes(path, max_w))
            total += self.slots[-1]
        self._buf = mmap.mmap(-1, max(1, total))

    def put(self, gid: int, rgb: np.ndarray) -> bool:
        """Copy ``rgb`` (uint8) into image ``gid``'s slot; False when it does not fit."""
        if rgb.dtype != np.uint8 or rgb.nbytes > self.slots[gid]:
            return False
        self.get(gid, rgb.shape)[...] = rgb
        return True

    def get(self, gid: int, shape: tuple[int, ...]) -> np.ndarray:
        """Image ``gid``'s slot as an array of ``shape``: its pixels as :meth:`put` wrote them (a
        view, not a copy)."""
        return np.frombuffer(self._buf, np.uint8, math.prod(shape), self.offsets[gid]).reshape(shape)


def _slot_bytes(path: Path, max_w: int) -> int:
    """Most bytes :meth:`Pixels.of` can make of the image at ``path``, in either orientation."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - unreadable here means unusable later; decode says why
        return 0
    long_side, short_side = max(w, h), min(w, h)
    if short_side < 1:
        return 0
    if long_side <= max_w:  # never shrunk
        return 3 * long_side * short_side
    # At most max_w wide, and at most as tall as the long side once the short side is scaled to
    # max_w (a narrower image is not shrunk: short_side * long_side is less still).
    return 3 * max_w * (math.ceil(max_w * long_side / short_side) + 1)


def _prepare_gallery_image(gid: int) -> tuple[int, object, object, "Pixels | tuple | None", str]:
    """One gallery image's tiles, local features and pixels (as the checks see them), or the
    reason it is unusable. Pixels are made here, where the image is decoded anyway: the query
    workers forked later share them instead of each decoding every gallery image again. They go
    into :class:`SharedPixels` when it has room (then only (shape, scale, size) comes back)."""
    ds, embedder, shared = _WORK["ds"], _WORK["embedder"], _WORK.get("shared")
    try:
        im = images.decode(ds.root / ds.gallery[gid])
        pix = Pixels.of(im)
        if shared is not None and shared.put(gid, pix.rgb):
            pix = (pix.rgb.shape, pix.scale, pix.size)
        return gid, embed_tiles(im, GALLERY_TILING, embedder), extract(im), pix, ""
    except images.BadImage as e:
        return gid, None, None, None, e.reason


def _rank_query(q: str) -> tuple[str, list[Match]]:
    ds, embedder = _WORK["ds"], _WORK["embedder"]
    try:
        qim = images.decode(ds.root / q)
    except images.BadImage as e:
        log.warning("query skipped: %s: %s", q, e.reason)
        return q, []
    query = Query(qim, embed_tiles(qim, QUERY_TILING, embedder))
    return q, rank_gallery(query, _WORK["index"], _WORK["gallery"], _WORK["votes"], _WORK["params"], top=10)


def default_workers(embedder: Embedder) -> int:
    """Worker processes for eval: one per core for the weight-free embedder; one for torch models
    (a forked child cannot safely reuse a parent's torch thread pool, and torch uses every core)."""
    return cpu_workers() if embedder.id.startswith("default") else 1


def evaluate(root: Path, out: Path, embedder: Embedder, threshold: float, params: MatchParams = MatchParams(),
             workers: int | None = None) -> dict:
    """Write ``out/rankings.csv`` and ``out/metrics.json``; return the metrics.

    Gallery images are prepared and queries ranked in ``workers`` forked processes (default:
    :func:`default_workers`); the indexes are built once in this process, before the query
    workers start, so they share them.
    """
    workers = default_workers(embedder) if workers is None else max(1, workers)
    ds = Dataset.load(root)
    out.mkdir(parents=True, exist_ok=True)
    log.info("dataset %s: %d gallery images, %d queries (%d copies); %d worker processes",
             root, len(ds.gallery), len(ds.queries), sum(1 for v in ds.truth.values() if v), workers)
    with forkable_faiss(workers):
        return _evaluate(ds, out, embedder, threshold, params, workers)


def _evaluate(ds: Dataset, out: Path, embedder: Embedder, threshold: float, params: MatchParams, workers: int) -> dict:
    t0 = time.perf_counter()
    gallery = _Gallery(ds.root, ds.gallery)
    try:
        shared = SharedPixels([ds.root / name for name in ds.gallery])
    except (OSError, ValueError, OverflowError) as e:  # a system that refuses the mapping: hand pixels back
        log.warning("gallery pixels are handed back through the workers' pipes (no shared mapping: %s)", e)
        shared = None
    _WORK.clear()
    _WORK.update(ds=ds, embedder=embedder, shared=shared)
    vecs, owners, boxes, bad = [], [], [], []
    sizes: dict[int, tuple[int, int]] = {}
    for n, (gid, tv, feats, pix, reason) in enumerate(fork_map(_prepare_gallery_image, range(len(ds.gallery)), workers), 1):
        if reason:
            log.warning("gallery image skipped: %s: %s", ds.gallery[gid], reason)
            bad.append(ds.gallery[gid])
            continue
        if isinstance(pix, tuple):
            shape, scale, size = pix
            pix = Pixels(shared.get(gid, shape), scale, size)
        sizes[gid] = pix.size
        gallery._features[gid] = feats
        gallery.pixels.put(gid, pix)
        vecs.append(tv.vectors)
        owners.append(np.full(len(tv), gid, np.int64))
        boxes.append(tv.boxes)
        if n % 50 == 0 or n == len(ds.gallery):
            log.info("gallery: %d/%d images embedded", n, len(ds.gallery))
    good = [gid for gid in range(len(ds.gallery)) if ds.gallery[gid] not in bad]
    pages = [gid for gid in good if is_page(sizes[gid])]
    t_images = time.perf_counter()
    # FAISS trains the vote index's inverted lists on every core, in a child (see VoteIndex).
    votes = VoteIndex.build({gid: gallery.features(gid) for gid in good}, forked_threads=workers)
    t_votes = time.perf_counter()
    templates = template_regions(pages, gallery.features, gallery.pixels, workers=workers, votes=votes)
    index = TileIndex(np.concatenate(vecs), np.concatenate(owners), np.concatenate(boxes), templates=templates)
    t_gallery = time.perf_counter() - t0
    stages = {"images": round(t_images - t0, 2), "vote_index": round(t_votes - t_images, 2),
              "templates": round(t0 + t_gallery - t_votes, 2)}
    log.info("gallery: %d tiles, %d template regions, %.1f s (images %.1f s, vote index %.1f s, template search %.1f s)",
             len(index), len(templates), t_gallery, *stages.values())

    t1 = time.perf_counter()
    _WORK.update(index=index, gallery=gallery, votes=votes, params=params)
    ranked_all: dict[str, list[Match]] = {}
    for n, (q, ranked) in enumerate(fork_map(_rank_query, ds.queries, workers), 1):
        ranked_all[q] = ranked
        if n % 25 == 0 or n == len(ds.queries):
            el = time.perf_counter() - t1
            log.info("queries: %d/%d (%.1f images/s)", n, len(ds.queries), n / el if el else 0.0)
    _WORK.clear()
    # As in a daily run, protected page regions that many queries match are boilerplate.
    qid = {q: i for i, q in enumerate(ds.queries)}
    frequent = frequent_regions([(qid[q], m) for q, ms in ranked_all.items() for m in ms if shows_region(m, params)], params.boilerplate_images)
    rankings: dict[str, list[str]] = {}
    rows: list[Scored] = []
    with open(out / "rankings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "rank", "gallery", "score"])
        for q, ranked in ranked_all.items():
            ranked = _as_reported([_without_boilerplate(m, frequent, params) for m in ranked])
            rankings[q] = [ds.gallery[m.gallery_id] for m in ranked]
            for r, m in enumerate(ranked, 1):
                w.writerow([q, r, ds.gallery[m.gallery_id], f"{m.score:.6f}"])
                rows.append(Scored(q, ds.gallery[m.gallery_id], m.score))
    t_query = time.perf_counter() - t1

    precision, recall, n_pred = at_threshold(rows, ds.truth, threshold)
    metrics = {
        "dataset": str(ds.root.resolve()),
        "rank1": rank_k(rankings, ds.truth, 1),
        "rank10": rank_k(rankings, ds.truth, 10),
        "uap": micro_ap(rows, ds.truth),
        "recall_at_p90": recall_at_precision(rows, ds.truth, 0.9),
        "threshold": threshold,
        "precision_at_threshold": precision,
        "recall_at_threshold": recall,
        "predictions_at_threshold": n_pred,
        "queries": len(ds.queries),
        "copy_queries": sum(1 for v in ds.truth.values() if v),
        "gallery_images": len(ds.gallery),
        "gallery_tiles": len(index),
        "embedder": embedder.id,
        "throughput": {
            "gallery_tiles_per_s": len(index) / t_gallery if t_gallery else None,
            "query_images_per_s": len(ds.queries) / t_query if t_query else None,
            "overall_images_per_s": (len(ds.gallery) + len(ds.queries)) / (t_gallery + t_query),
            "gallery_seconds": round(t_gallery, 2),
            # Decoding, tiles, SIFT and pixels of every gallery image; the vote index; the
            # template search over the detail pages (twins, then page pairs).
            "gallery_stage_seconds": stages,
            "workers": workers,
            "query_seconds": round(t_query, 2),
        },
        "skipped_gallery": bad,
    }
    # A set without copies (the unrelated set) has no rank or precision figures: null, not NaN.
    metrics = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return metrics
