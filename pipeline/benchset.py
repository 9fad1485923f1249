"""Build study-style copy-detection sets (type1 photos, type2 detail-page parts, combined) from licensed photos."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from pipeline import synth

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
COLOUR_WORDS = {
    "black", "white", "gray", "grey", "red", "blue", "green", "yellow", "orange", "purple", "pink",
    "brown", "beige", "silver", "gold", "stainless", "steel", "navy", "lavender", "bk", "br", "gr",
}
PAGE_WIDTH = 860
COPIER_SHOPS = ("카피몰", "베스트샵", "오늘특가", "스타일마켓", "패션하우스", "굿딜스토어")
BRANDS = ("HANBIT", "DAILY FIT", "STYLE ON", "MOVE LAB", "URBAN KIT", "SOFT WEAR", "LUMA KOREA", "ACTIVE ONE")
#: Two photos are near duplicates when under 1% of their 32x32 RGB thumbnail pixels differ by more
#: than 40 in some channel: re-encodes and re-sizes pass, colour variants (whole product recoloured) do not.
NEAR_DUPLICATE_DELTA = 40
NEAR_DUPLICATE_SHARE = 0.01
#: A non-copy cut from another colour of a gallery photo's shot can show only what the two have in
#: common (the model's legs and black shorts, the orange waistband cropped off): fewer than this
#: share of its pixels differ from the same region of the gallery photo (compared 160 px across,
#: by more than NEAR_DUPLICATE_DELTA in some channel). That query is a copy of the gallery photo's
#: pixels, whatever file it was cut from, so it is drawn again. A variant whose difference shows
#: stays a non-copy: a waistband in another colour is 0.9% of a whole photo.
SHARED_REGION_SHARE = 0.005
#: Draws of a non-copy's transform before one that shows what its photo does not share is kept.
SHARED_REGION_DRAWS = 20


@dataclass(frozen=True)
class BenchSize:
    """How many images each set gets."""

    t1_gallery: int
    t1_copies: int
    t1_noncopies: int
    t2_pages: int
    t2_copies: int
    t2_decoy_pages: int
    t2_noncopies: int
    page_heights: tuple[int, int]


SIZES = {
    "small": BenchSize(t1_gallery=12, t1_copies=10, t1_noncopies=6, t2_pages=6, t2_copies=12,
                       t2_decoy_pages=3, t2_noncopies=6, page_heights=(3000, 4500)),
    "full": BenchSize(t1_gallery=300, t1_copies=200, t1_noncopies=100, t2_pages=150, t2_copies=350,
                      t2_decoy_pages=50, t2_noncopies=150, page_heights=(3000, 12000)),
}


#: Suspects in the unrelated set, per size.
UNRELATED = {"small": 24, "full": 1000}


@dataclass(frozen=True)
class Photo:
    """A source photo: file, its name in the sets (`<folder>/<relative path>`) and its style key."""

    path: Path
    name: str
    style: str


# ---------------------------------------------------------------------------------- photos


def style_key(stem: str) -> str:
    """The product style of a file name: 'mh01-gray_main' -> 'mh01', 'toaster-black' -> 'toaster'."""
    tokens = [t for t in re.split(r"[-_\s]+", stem.lower()) if t]
    if tokens and re.fullmatch(r"[a-z]+\d+", tokens[0]):
        return tokens[0]
    kept = [t for t in tokens if t not in COLOUR_WORDS and not t.isdigit() and t not in {"main", "back", "alt1", "alternate"}]
    return "-".join(kept) or stem.lower()


def safe_name(relative: str) -> str:
    """A set-internal file name without commas, quotes or white space (CSV- and shell-friendly)."""
    return re.sub(r"[\s,;\"'`]+", "_", relative)


def collect_photos(dirs: Sequence[Path]) -> list[Photo]:
    """Every image file under `dirs`, sorted by name; names are `<folder>/<relative path>`, made safe."""
    photos: list[Photo] = []
    names: set[str] = set()
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"photo folder {folder} does not exist")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                name = safe_name(f"{folder.name}/{path.relative_to(folder).as_posix()}")
                while name in names:
                    name = name.replace(path.suffix, f"-dup{path.suffix}")
                names.add(name)
                photos.append(Photo(path, name, f"{folder.name}:{style_key(path.stem)}"))
    return sorted(photos, key=lambda p: p.name)


def thumbnail(path: Path) -> np.ndarray:
    """A 32x32 RGB thumbnail as int16, for near-duplicate checks."""
    with Image.open(path) as image:
        image.draft("RGB", (128, 128))
        return np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.int16)


def dedupe(photos: Sequence[Photo], workers: int = 1) -> list[Photo]:
    """Drop photos whose colour thumbnail nearly equals an earlier one (re-uploads, re-sizes); O(n^2) but n is ~1,000."""
    if not photos:
        return []
    paths = [p.path for p in photos]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            thumbs = np.stack(list(pool.map(thumbnail, paths, chunksize=32)))
    else:
        thumbs = np.stack([thumbnail(path) for path in paths])
    keep: list[int] = []
    for i in range(len(photos)):
        if keep:
            changed = np.abs(thumbs[keep] - thumbs[i]).max(axis=3) > NEAR_DUPLICATE_DELTA
            distance = changed.mean(axis=(1, 2))
            if distance.min() < NEAR_DUPLICATE_SHARE:
                logger.debug("dropping %s: near duplicate of %s", photos[i].name, photos[keep[int(distance.argmin())]].name)
                continue
        keep.append(i)
    logger.info("%d photos, %d after removing near duplicates", len(photos), len(keep))
    return [photos[i] for i in keep]


def split_by_style(photos: Sequence[Photo], wanted: int, rng: random.Random) -> tuple[list[Photo], list[Photo]]:
    """Split whole styles into a first part of about `wanted` photos and the rest (no photo in both)."""
    styles: dict[str, list[Photo]] = {}
    for photo in photos:
        styles.setdefault(photo.style, []).append(photo)
    keys = sorted(styles)
    rng.shuffle(keys)
    first: list[Photo] = []
    rest: list[Photo] = []
    for key in keys:
        (first if len(first) < wanted else rest).extend(styles[key])
    return first, rest


@lru_cache(maxsize=64)
def load_photo(path: Path) -> Image.Image:
    """A photo as RGB (cached per process)."""
    with Image.open(path) as image:
        return image.convert("RGB")


# --------------------------------------------------------------------------------- writing


def item_rng(seed: int, *key: object) -> random.Random:
    """A generator for one item, independent of the order items are built in."""
    return random.Random(f"{seed}:" + ":".join(str(k) for k in key))


def save_query(image: Image.Image, path: Path) -> None:
    """Write a query (already recompressed) losslessly enough: JPEG q95 of the decoded copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(synth.jpeg_bytes(image, 95))


def write_truth(dataset: Path, rows: Iterable[tuple[str, str]]) -> None:
    """truth.csv with header query,gallery."""
    with (dataset / "truth.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "gallery"])
        writer.writerows(sorted(rows))


def write_meta(dataset: Path, meta: list[dict[str, Any]]) -> None:
    """meta.json: per query its kind, source and the transform's ground-truth boxes."""
    (dataset / "meta.json").write_text(json.dumps(sorted(meta, key=lambda m: m["query"]), ensure_ascii=False, indent=1),
                                       encoding="utf-8")


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (same file system), else copy it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError as error:
        logger.debug("cannot hard-link %s (%s); copying", source, error)
        shutil.copyfile(source, target)


def run_tasks(func: Callable[[Any], list[dict[str, Any]]], tasks: list[Any], workers: int) -> list[dict[str, Any]]:
    """Run tasks in a process pool (or inline for one worker); concatenate their results in task order."""
    if workers <= 1 or len(tasks) <= 1:
        return [row for task in tasks for row in func(task)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [row for rows in pool.map(func, tasks, chunksize=max(1, len(tasks) // (workers * 8))) for row in rows]


# ----------------------------------------------------------------------------------- type 1


def shows_shared_region(image: Image.Image, box: tuple[int, int, int, int] | None,
                        siblings: Sequence[Image.Image]) -> bool:
    """Whether the region ``box`` of ``image`` is, pixel for pixel, the same region of one of
    ``siblings`` (other colours of the product's shot, the same size: :data:`SHARED_REGION_SHARE`)."""
    if box is None:
        return False
    region = image.crop(box)
    width = min(160, region.width)
    size = (width, max(1, round(region.height * width / region.width)))
    mine = np.asarray(region.resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
    for sibling in siblings:
        if sibling.size != image.size:
            continue
        theirs = np.asarray(sibling.crop(box).resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
        if (np.abs(mine - theirs).max(axis=2) > NEAR_DUPLICATE_DELTA).mean() < SHARED_REGION_SHARE:
            return True
    return False


def noncopy(image: Image.Image, rng: random.Random, siblings: Sequence[Image.Image]) -> tuple[synth.Transformed, list[str]]:
    """:func:`photo_copy` of a photo that is not in the gallery, drawn again while it shows only
    what the photo shares with a gallery photo of the same product (:func:`shows_shared_region`)."""
    for _ in range(SHARED_REGION_DRAWS):
        copy, ops = photo_copy(image, rng)
        if not shows_shared_region(image, copy.source_box, siblings):
            return copy, ops
        logger.debug("non-copy draw %s shows only pixels a gallery photo has: drawn again", ops)
    raise ValueError(f"no transform of this photo shows more than a gallery photo of its product in {SHARED_REGION_DRAWS} draws")


def photo_copy(image: Image.Image, rng: random.Random) -> tuple[synth.Transformed, list[str]]:
    """A thief's version of a product photo: 1-4 of crop, scale, mirror, rotate, jitter, banners,
    watermark, always recompressed."""
    ops = set(rng.sample(("crop", "scale", "mirror", "rotate", "jitter", "banners", "watermark"), rng.randint(1, 4)))
    t = synth.start(image)
    if "crop" in ops:
        t = synth.crop_area(t, rng, min_frac=0.55, max_frac=0.95)
    if "scale" in ops or max(t.image.size) > 1000:
        t = synth.resize_width(t, max(160, round(t.image.width * rng.uniform(0.4, 1.1))))
    if "mirror" in ops:
        t = synth.mirror(t)
    if "rotate" in ops:
        t = synth.rotate(t, rng.choice((-1, 1)) * rng.uniform(1.5, 8.0))
    if "jitter" in ops:
        t = synth.colour_jitter(t, rng, strength=0.25)
    if "banners" in ops:
        t = synth.add_banners(t, *synth.copier_banners(t.image.width, rng, rng.choice(COPIER_SHOPS)))
    if "watermark" in ops:
        t = synth.watermark(t, rng.choice(COPIER_SHOPS), rng)
    quality = rng.randint(40, 90)
    return synth.jpeg(t, quality), sorted(ops) + [f"jpeg{quality}"]


def _t1_task(task: tuple[Path, int, str, str, Photo, str | None, tuple[Path, ...]]) -> list[dict[str, Any]]:
    """Write one type1 query; returns its meta row."""
    dataset, seed, query, kind, photo, gallery, siblings = task
    image, rng = load_photo(photo.path), item_rng(seed, "t1", query)
    if gallery:
        copy, ops = photo_copy(image, rng)
    else:
        copy, ops = noncopy(image, rng, [load_photo(p) for p in siblings])
    save_query(copy.image, dataset / query)
    return [{"query": query, "kind": kind, "source": photo.name, "gallery": gallery, "ops": ops,
             "box": list(copy.box), "gallery_box": list(copy.source_box) if copy.source_box else None,
             "mirrored": copy.mirrored}]


def siblings_in(gallery: Sequence[Photo], photo: Photo) -> tuple[Path, ...]:
    """The gallery's other photos of the photo's product (same style), which a non-copy must not
    merely repeat (:func:`noncopy`)."""
    return tuple(p.path for p in gallery if p.style == photo.style and p.name != photo.name)


def plan_type1(photos: Sequence[Photo], size: BenchSize, rng: random.Random) -> tuple[list[Photo], list[Photo], list[Photo]]:
    """Choose gallery photos, photos to copy, and left-out photos (hard negatives first) as non-copies."""
    shuffled = list(photos)
    rng.shuffle(shuffled)
    gallery = shuffled[: size.t1_gallery]
    left_out = shuffled[size.t1_gallery:]
    gallery_styles = {p.style for p in gallery}
    variants = [p for p in left_out if p.style in gallery_styles]
    others = [p for p in left_out if p.style not in gallery_styles]
    half = size.t1_noncopies // 2
    noncopies = variants[:half] + others[: size.t1_noncopies - min(half, len(variants))]
    noncopies += variants[half: half + size.t1_noncopies - len(noncopies)]
    copies = rng.sample(gallery, min(size.t1_copies, len(gallery)))
    return gallery, copies, noncopies


def build_type1(dataset: Path, photos: Sequence[Photo], size: BenchSize, seed: int, workers: int) -> dict[str, int]:
    """type1: gallery of product photos, transformed copies and transformed non-copies as queries."""
    rng = item_rng(seed, "t1", "plan")
    gallery, copies, noncopies = plan_type1(photos, size, rng)
    for photo in gallery:
        link_or_copy(photo.path, dataset / "gallery" / photo.name)
    specs = [("copy", p, f"gallery/{p.name}") for p in copies] + [("noncopy", p, None) for p in noncopies]
    order = list(range(len(specs)))
    rng.shuffle(order)
    tasks = [(dataset, seed, f"queries/q{index:05d}.jpg", *specs[spec], siblings_in(gallery, specs[spec][1]))
             for index, spec in enumerate(order)]
    meta = run_tasks(_t1_task, tasks, workers)
    write_truth(dataset, [(m["query"], m["gallery"]) for m in meta if m["gallery"]])
    write_meta(dataset, meta)
    counts = {"gallery": len(gallery), "copies": len(copies), "noncopies": len(noncopies)}
    logger.info("type1: %s", counts)
    return counts


# ----------------------------------------------------------------------------------- type 2


@lru_cache(maxsize=16)
def boilerplate(seed: int, brand: int) -> tuple[Image.Image, Image.Image]:
    """A brand's shared header and shipping/return notice (the same pixels on every page of the brand)."""
    rng = item_rng(seed, "brand", brand)
    name = BRANDS[brand % len(BRANDS)]
    return synth.brand_header(PAGE_WIDTH, name, rng), synth.shipping_notice(PAGE_WIDTH, rng)


@dataclass(frozen=True)
class PageTask:
    """One type2 page and the parts (queries) to cut from it."""

    dataset: Path
    seed: int
    page_id: str
    photos: tuple[Photo, ...]
    brand: int
    gallery: str | None  # relative gallery path when the page is protected, None for a decoy
    queries: tuple[str, ...]
    heights: tuple[int, int]


def content_rows(page: synth.DetailPage) -> tuple[int, int]:
    """Rows between the shared header and the shared notice: the page's own content."""
    return page.blocks[0].box[3], page.blocks[-1].box[1]


def decoy_window(page: synth.DetailPage, rng: random.Random) -> tuple[tuple[int, int], str]:
    """Where a non-copy part is cut: at the top (with the header), the bottom (with the notice) or inside."""
    anchor = rng.choice(("top", "bottom", "bottom", "middle"))
    height = page.image.height
    if anchor == "top":
        return (0, min(height, rng.randint(900, 2500))), anchor
    if anchor == "bottom":
        return (max(0, height - rng.randint(900, 2500)), height), anchor
    return (0, height), anchor


def page_part(page: synth.DetailPage, rng: random.Random, within: tuple[int, int]) -> tuple[synth.Transformed, list[str]]:
    """A copier's recomposition of a part of `page` inside rows `within`."""
    low, high = within
    t = synth.vertical_segment(page.image, rng, min_height=min(600, high - low), max_height=2500, within=within)
    ops = []
    width = rng.randint(640, 1000)
    t = synth.resize_width(t, width)
    ops.append(f"width{width}")
    if rng.random() < 0.8:
        t = synth.crop_width(t, rng)
        ops.append("crop_width")
    if rng.random() < 0.85:
        t = synth.add_banners(t, *synth.copier_banners(t.image.width, rng, rng.choice(COPIER_SHOPS)))
        ops.append("banners")
    if rng.random() < 0.5:
        t = synth.watermark(t, rng.choice(COPIER_SHOPS), rng)
        ops.append("watermark")
    quality = rng.randint(50, 90)
    ops.append(f"jpeg{quality}")
    return synth.jpeg(t, quality), ops


def _t2_task(task: PageTask) -> list[dict[str, Any]]:
    """Compose one page (saved when protected) and write its parts; returns their meta rows."""
    rng = item_rng(task.seed, "t2", task.page_id)
    header, notice = boilerplate(task.seed, task.brand)
    page = synth.compose_detail_page(
        [load_photo(p.path) for p in task.photos], rng, width=PAGE_WIDTH, photo_ids=[p.name for p in task.photos],
        header=header, notice=notice, min_height=task.heights[0], max_height=task.heights[1],
    )
    if task.gallery:
        target = task.dataset / task.gallery
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(synth.jpeg_bytes(page.image, 90))
    rows = []
    for query in task.queries:
        anchor = "content"
        window = content_rows(page)
        if task.gallery is None:
            window, anchor = decoy_window(page, rng)
        part, ops = page_part(page, rng, window)
        save_query(part.image, task.dataset / query)
        rows.append({"query": query, "kind": "copy" if task.gallery else "noncopy", "source": task.page_id,
                     "gallery": task.gallery, "anchor": anchor, "ops": ops, "box": list(part.box),
                     "gallery_box": list(part.source_box) if part.source_box else None,
                     "page_height": page.image.height, "photos": [p.name for p in task.photos]})
    return rows


def spread(total: int, bins: int) -> list[int]:
    """`total` split into `bins` near-equal counts."""
    return [total // bins + (1 if i < total % bins else 0) for i in range(bins)]


def plan_type2(dataset: Path, photos: Sequence[Photo], size: BenchSize, seed: int) -> list[PageTask]:
    """Pages (protected and decoys) with disjoint photos, brands shared by both, and query names.

    Decoy pages show no product of a protected page: a page shows a crop of each photo, and the
    crops of two colour variants of one composited shot can be the same pixels (the model's legs
    and shoes, the garment cut off), which would make a decoy part a real copy labelled as none.
    Colour variants as non-copies are type1's and the unrelated set's (whole photos, whose
    garment is visible).
    """
    rng = item_rng(seed, "t2", "plan")
    pages = size.t2_pages + size.t2_decoy_pages
    per_page = max(1, min(4, len(photos) // max(1, pages)))
    shuffled = list(photos)
    rng.shuffle(shuffled)
    if len(shuffled) < pages:
        raise ValueError(f"type2 needs at least {pages} photos, got {len(shuffled)}")
    styles: dict[str, list[Photo]] = {}
    for photo in shuffled:
        styles.setdefault(photo.style, []).append(photo)
    protected: list[Photo] = []
    decoy: list[Photo] = []
    for group in styles.values():
        (protected if len(protected) < size.t2_pages * per_page else decoy).extend(group)
    if len(decoy) < size.t2_decoy_pages:
        raise ValueError(f"type2 needs photos of more products: {len(decoy)} left for {size.t2_decoy_pages} decoy pages")
    decoy_per_page = max(1, min(per_page, len(decoy) // max(1, size.t2_decoy_pages)))
    brands = max(2, min(len(BRANDS), pages // 25))
    counts = spread(size.t2_copies, size.t2_pages) + spread(size.t2_noncopies, size.t2_decoy_pages)
    names = [f"queries/q{i:05d}.jpg" for i in range(sum(counts))]
    rng.shuffle(names)
    tasks, used = [], 0
    for index in range(pages):
        protected_page = index < size.t2_pages
        page_id = f"page-{index:04d}" if protected_page else f"decoy-{index - size.t2_pages:04d}"
        tasks.append(PageTask(
            dataset=dataset, seed=seed, page_id=page_id,
            photos=tuple(protected[index * per_page: (index + 1) * per_page] if protected_page
                         else decoy[(index - size.t2_pages) * decoy_per_page: (index - size.t2_pages + 1) * decoy_per_page]),
            brand=index % brands,
            gallery=f"gallery/pages/{page_id}.jpg" if protected_page else None,
            queries=tuple(names[used: used + counts[index]]), heights=size.page_heights,
        ))
        used += counts[index]
    return tasks


def build_type2(dataset: Path, photos: Sequence[Photo], size: BenchSize, seed: int, workers: int) -> dict[str, int]:
    """type2: long detail pages as gallery; copier-recomposed parts and boilerplate-sharing non-copies as queries."""
    tasks = plan_type2(dataset, photos, size, seed)
    meta = run_tasks(_t2_task, tasks, workers)
    write_truth(dataset, [(m["query"], m["gallery"]) for m in meta if m["gallery"]])
    write_meta(dataset, meta)
    counts = {"gallery": size.t2_pages, "decoy_pages": size.t2_decoy_pages,
              "copies": sum(m["kind"] == "copy" for m in meta), "noncopies": sum(m["kind"] == "noncopy" for m in meta)}
    logger.info("type2: %s", counts)
    return counts


# --------------------------------------------------------------------------------- combined


def read_truth(dataset: Path) -> list[tuple[str, str]]:
    with (dataset / "truth.csv").open(encoding="utf-8", newline="") as handle:
        return [(row["query"], row["gallery"]) for row in csv.DictReader(handle)]


def build_combined(dataset: Path, parts: dict[str, Path]) -> dict[str, int]:
    """combined: one gallery with photos and pages, and both sets' queries (`<prefix>-` names)."""
    truth: list[tuple[str, str]] = []
    counts = {"gallery": 0, "queries": 0}
    for prefix, source in parts.items():
        for path in sorted((source / "gallery").rglob("*")):
            if path.is_file():
                link_or_copy(path, dataset / "gallery" / prefix / path.relative_to(source / "gallery"))
                counts["gallery"] += 1
        for path in sorted((source / "queries").glob("*")):
            link_or_copy(path, dataset / "queries" / f"{prefix}-{path.name}")
            counts["queries"] += 1
        for query, gallery in read_truth(source):
            truth.append((f"queries/{prefix}-{Path(query).name}", f"gallery/{prefix}/{Path(gallery).relative_to('gallery').as_posix()}"))
    write_truth(dataset, truth)
    counts["copies"] = len(truth)
    logger.info("combined: %s", counts)
    return counts


# ------------------------------------------------------------------------------- unrelated


def _unrelated_photo_task(task: tuple[Path, int, str, Photo, tuple[Path, ...]]) -> list[dict[str, Any]]:
    dataset, seed, query, photo, siblings = task
    copy, ops = noncopy(load_photo(photo.path), item_rng(seed, "unrelated", query), [load_photo(p) for p in siblings])
    save_query(copy.image, dataset / query)
    return [{"query": query, "kind": "unrelated-photo", "source": photo.name, "gallery": None, "ops": ops}]


def build_unrelated(dataset: Path, combined: Path, photos: Sequence[Photo], size: BenchSize, seed: int, workers: int,
                    total: int = 1000, gallery: Sequence[Photo] = ()) -> dict[str, int]:
    """unrelated: the combined gallery, and ``total`` suspects none of which copies it.

    Half are photos left out of every gallery (each in two transformed versions, as type1 makes
    copies; colour variants and other shots of gallery products included), half are parts of new
    pages composed from those photos under the same brands, so they share the gallery pages'
    header and shipping notice. A matcher should report no finding on any of them. A photo
    suspect never shows only what its photo shares with a ``gallery`` photo of the same product
    (:func:`noncopy`), and the pages show no product of a ``gallery`` photo, as type2's decoy
    pages show none of a protected page: a page shows a crop of each photo, and the crop of
    another colour of a gallery photo's shot can be that photo's pixels (the model's face, her
    trousers), a copy labelled as none.
    """
    for path in sorted((combined / "gallery").rglob("*")):
        if path.is_file():
            link_or_copy(path, dataset / "gallery" / path.relative_to(combined / "gallery"))
    rng = item_rng(seed, "unrelated", "plan")
    pool = list(photos)
    rng.shuffle(pool)
    n_photo = min(total // 2, 2 * len(pool))
    photo_tasks = [(dataset, seed, f"queries/u-photo-{i:05d}.jpg", pool[i % len(pool)], siblings_in(gallery, pool[i % len(pool)]))
                   for i in range(n_photo)]
    gallery_styles = {p.style for p in gallery}
    page_pool = [p for p in pool if p.style not in gallery_styles]
    if not page_pool:
        raise ValueError("unrelated pages need photos of products that no gallery photo shows: every left-out photo has one")
    n_pages = max(1, (total - n_photo) // 8)
    brands = max(2, min(len(BRANDS), (size.t2_pages + size.t2_decoy_pages) // 25))
    counts = spread(total - n_photo, n_pages)
    page_tasks, used = [], 0
    for index in range(n_pages):
        page_photos = tuple(rng.sample(page_pool, min(3, len(page_pool))))
        queries = tuple(f"queries/u-page-{used + j:05d}.jpg" for j in range(counts[index]))
        used += counts[index]
        page_tasks.append(PageTask(dataset=dataset, seed=seed + 7919, page_id=f"unrelated-{index:04d}", photos=page_photos,
                                   brand=index % brands, gallery=None, queries=queries, heights=size.page_heights))
    meta = run_tasks(_unrelated_photo_task, photo_tasks, workers) + run_tasks(_t2_task, page_tasks, workers)
    write_truth(dataset, [])
    write_meta(dataset, meta)
    out = {"gallery": sum(1 for p in (dataset / "gallery").rglob("*") if p.is_file()), "photo_queries": n_photo,
           "page_queries": total - n_photo, "source_photos": len(pool)}
    logger.info("unrelated: %s", out)
    return out


# ------------------------------------------------------------------------------------- entry


def build_bench(out: Path, photo_dirs: Sequence[Path], *, seed: int = 0, size: str = "full",
                workers: int | None = None) -> dict[str, Any]:
    """Build OUT/type1, OUT/type2, OUT/combined and OUT/unrelated; returns a summary (also written to OUT/bench.json)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    spec = SIZES[size]
    workers = workers or os.cpu_count() or 1
    started = time.perf_counter()
    out = Path(out)
    for name in ("type1", "type2", "combined", "unrelated"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    photos = dedupe(collect_photos(photo_dirs), workers)
    wanted_t1 = spec.t1_gallery + spec.t1_noncopies
    t1_photos, t2_photos = split_by_style(photos, wanted_t1, item_rng(seed, "split"))
    if len(t1_photos) < wanted_t1 or len(t2_photos) < spec.t2_pages + spec.t2_decoy_pages:
        raise ValueError(f"{len(photos)} distinct photos are too few for size {size!r}")
    summary: dict[str, Any] = {"seed": seed, "size": size, "photos": len(photos), "spec": asdict(spec)}
    summary["type1"] = build_type1(out / "type1", t1_photos, spec, seed, workers)
    summary["type2"] = build_type2(out / "type2", t2_photos, spec, seed, workers)
    summary["combined"] = build_combined(out / "combined", {"t1": out / "type1", "t2": out / "type2"})
    # Photos in no gallery: type1's left-out photos and the type2 decoys' photos.
    in_gallery = {p.name for p in t1_photos if (out / "type1" / "gallery" / p.name).exists()}
    in_gallery |= {p.name for task in plan_type2(out / "type2", t2_photos, spec, seed) if task.gallery for p in task.photos}
    left_out = [p for p in photos if p.name not in in_gallery]
    gallery_photos = [p for p in t1_photos if p.name in in_gallery]
    summary["unrelated"] = build_unrelated(out / "unrelated", out / "combined", left_out, spec, seed, workers,
                                           total=UNRELATED[size], gallery=gallery_photos)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "bench.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    logger.info("bench built in %s in %.1f s", out, summary["seconds"])
    return summary
