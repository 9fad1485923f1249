"""Tests for pipeline.benchset: `bench build --size small` layout, truth paths, ground truth and determinism."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline import benchset
from pipeline.cli import build_parser

PHOTOS = Path(__file__).resolve().parents[1] / "crawler" / "demo" / "photos"


def read_truth(dataset: Path) -> list[tuple[str, str]]:
    with (dataset / "truth.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["query", "gallery"]
        return [(row[0], row[1]) for row in reader]


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "bench.json"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    args = build_parser().parse_args(["bench", "build", str(out), "--photos", str(PHOTOS), "--size", "small",
                                      "--seed", "3", "--workers", "2"])
    assert args.func(args) == 0
    return out


def test_sets_have_the_eval_layout(bench: Path) -> None:
    for name in ("type1", "type2", "combined"):
        dataset = bench / name
        gallery = [p for p in (dataset / "gallery").rglob("*") if p.is_file()]
        queries = list((dataset / "queries").glob("*"))
        truth = read_truth(dataset)
        assert gallery and queries and truth
        assert len(truth) < len(queries)  # some queries are non-copies
        assert len({q for q, _ in truth}) == len(truth)  # one protected image per copy
        for query, protected in truth:
            assert (dataset / query).is_file() and (dataset / protected).is_file()
            assert query.startswith("queries/") and protected.startswith("gallery/")


def test_type1_noncopies_include_colour_variants_of_gallery_styles(bench: Path) -> None:
    meta = json.loads((bench / "type1" / "meta.json").read_text(encoding="utf-8"))
    gallery_styles = {benchset.style_key(Path(p).stem) for p in (bench / "type1" / "gallery").rglob("*.jpg")}
    noncopies = [m for m in meta if m["kind"] == "noncopy"]
    assert noncopies and all(m["gallery"] is None for m in noncopies)
    assert any(benchset.style_key(Path(m["source"]).stem) in gallery_styles for m in noncopies)
    gallery_names = {p.relative_to(bench / "type1" / "gallery").as_posix() for p in (bench / "type1" / "gallery").rglob("*.jpg")}
    assert not {m["source"] for m in noncopies} & gallery_names


def test_type2_pages_and_parts(bench: Path) -> None:
    dataset = bench / "type2"
    for page in (dataset / "gallery").rglob("*.jpg"):
        with Image.open(page) as image:
            assert image.width == benchset.PAGE_WIDTH and image.height >= 3000
    meta = json.loads((dataset / "meta.json").read_text(encoding="utf-8"))
    assert {m["kind"] for m in meta} == {"copy", "noncopy"}
    assert {m["anchor"] for m in meta if m["kind"] == "noncopy"} & {"top", "bottom"}
    for row in meta:
        with Image.open(dataset / row["query"]) as part:
            left, top, right, bottom = row["box"]
            assert 0 <= left < right <= part.width and 0 <= top < bottom <= part.height
            assert 0.6 * 640 - 1 <= part.width <= 1000
        if row["kind"] == "copy":
            gl, gt, gr, gb = row["gallery_box"]
            assert 0 <= gl < gr <= benchset.PAGE_WIDTH and 0 <= gt < gb <= row["page_height"]


def test_combined_holds_both_galleries(bench: Path) -> None:
    combined = read_truth(bench / "combined")
    assert len(combined) == len(read_truth(bench / "type1")) + len(read_truth(bench / "type2"))
    assert {Path(g).parts[1] for _, g in combined} == {"t1", "t2"}


def test_build_is_deterministic(bench: Path, tmp_path: Path) -> None:
    benchset.build_bench(tmp_path, [PHOTOS], seed=3, size="small", workers=1)
    assert digest(tmp_path) == digest(bench)


def test_other_seed_gives_other_queries(bench: Path, tmp_path: Path) -> None:
    benchset.build_bench(tmp_path, [PHOTOS], seed=4, size="small", workers=2)
    assert digest(tmp_path / "type1" / "queries") != digest(bench / "type1" / "queries")


def test_style_key() -> None:
    assert benchset.style_key("mh01-gray_main") == "mh01"
    assert benchset.style_key("2-slice-toaster-black") == "slice-toaster"


def test_too_few_photos_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    Image.new("RGB", (50, 50), (200, 10, 10)).save(folder / "a.jpg")
    with pytest.raises(ValueError, match="too few"):
        benchset.build_bench(tmp_path / "out", [folder], size="small", workers=1)


def test_unrelated_set_copies_nothing_of_the_combined_gallery(bench: Path) -> None:
    unrelated, combined = bench / "unrelated", bench / "combined"
    assert read_truth(unrelated) == []
    assert digest(unrelated / "gallery") == digest(combined / "gallery")
    meta = json.loads((unrelated / "meta.json").read_text(encoding="utf-8"))
    queries = sorted(p.name for p in (unrelated / "queries").glob("*"))
    assert len(queries) == benchset.UNRELATED["small"] == len(meta)
    kinds = {m["kind"] for m in meta}
    assert kinds == {"unrelated-photo", "noncopy"}  # left-out photos and parts of new pages
    # No suspect photo is made from a photo in any gallery: neither type1's nor a type2 page's.
    type1_gallery = {p.relative_to(bench / "type1" / "gallery").as_posix() for p in (bench / "type1" / "gallery").rglob("*") if p.is_file()}
    t2_meta = json.loads((bench / "type2" / "meta.json").read_text(encoding="utf-8"))
    assert all(m["source"] not in type1_gallery for m in meta if m["kind"] == "unrelated-photo")
    assert all(m["gallery"] is None and m["source"].startswith("unrelated-") for m in meta if m["kind"] == "noncopy")
    assert {m["source"] for m in t2_meta}.isdisjoint({m["source"] for m in meta})
    # Nor does a new page show another colour of a type1 gallery photo's product (a crop of it
    # could be that photo's own pixels, the model's face).
    styles = {benchset.style_key(Path(name).stem) for name in type1_gallery}
    shown = [name for m in meta if m["kind"] == "noncopy" for name in m["photos"]]
    assert shown and not styles & {benchset.style_key(Path(name).stem) for name in shown}


def test_decoy_pages_show_no_product_of_a_protected_page(tmp_path: Path) -> None:
    # Crops of two colour variants of one composited shot can be the same pixels: a decoy showing
    # another colour of a protected page's product could be a real copy labelled as none.
    photos = benchset.dedupe(benchset.collect_photos([PHOTOS]))
    size = benchset.SIZES["small"]
    tasks = benchset.plan_type2(tmp_path, photos, size, seed=3)
    protected = {p.style for t in tasks if t.gallery for p in t.photos}
    decoys = {p.style for t in tasks if not t.gallery for p in t.photos}
    assert protected and decoys and not protected & decoys
    assert all(t.photos for t in tasks)
    assert len({p.name for t in tasks for p in t.photos}) == sum(len(t.photos) for t in tasks)  # no photo twice


LUMA = Path(__file__).resolve().parent / "data" / "photos" / "magento-luma"


def test_a_noncopy_never_shows_only_what_a_gallery_photo_of_its_product_shows() -> None:
    """wsh04 orange and black are one shot with another waistband. The bench's type1 query q00266
    cropped the orange one below the waistband: the black gallery photo's own pixels, labelled a
    non-copy (the matcher's one type1 false finding). A non-copy is drawn again until it shows
    what the photos do not share."""
    orange = benchset.load_photo(LUMA / "wsh04-orange_main.jpg")
    black = benchset.load_photo(LUMA / "wsh04-black_main.jpg")
    assert benchset.shows_shared_region(orange, (75, 357, 996, 1183), [black])  # legs and shorts only
    assert not benchset.shows_shared_region(orange, (0, 0, *orange.size), [black])  # the waistband shows
    assert not benchset.shows_shared_region(orange, (75, 357, 996, 1183), [])
    rng = lambda: benchset.item_rng(0, "t1", "queries/q00266.jpg")  # noqa: E731
    drawn, _ = benchset.photo_copy(orange, rng())
    assert benchset.shows_shared_region(orange, drawn.source_box, [black])  # what the bench drew before
    kept, ops = benchset.noncopy(orange, rng(), [black])
    assert not benchset.shows_shared_region(orange, kept.source_box, [black]), ops
    for seed in range(30):
        copy, ops = benchset.noncopy(orange, benchset.item_rng(seed, "unrelated", "q"), [black])
        assert not benchset.shows_shared_region(orange, copy.source_box, [black]), (seed, ops)
