"""The matcher on real (licensed) photos: copies verify, colour variants and look-alikes do not."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from pipeline.local import VoteIndex, extract
from pipeline.match import Match, MatchParams, frequent_regions, verified_score
from pipeline.synth import load_font
from pipeline.verify import PixelCache, Verification, covered_share, shared_regions, verify_features

PHOTOS = Path(__file__).resolve().parent.parent / "crawler" / "demo" / "photos" / "magento-luma"
#: More photos of the same store, for tests only (licences beside them).
MORE_PHOTOS = Path(__file__).resolve().parent / "data" / "photos" / "magento-luma"
THRESHOLD = 0.4


def photo(name: str) -> Image.Image:
    path = PHOTOS / f"{name}.jpg"
    return Image.open(path if path.exists() else MORE_PHOTOS / f"{name}.jpg").convert("RGB")


def copier(im: Image.Image, *, mirror: bool = False, crop: float = 0.8, quality: int = 60) -> Image.Image:
    """What a thief does: crop, mirror, watermark, recompress."""
    w, h = im.size
    out = im.crop((int(w * (1 - crop) / 2), int(h * (1 - crop) / 3), int(w * (1 + crop) / 2), int(h * (2 + crop) / 3)))
    out = ImageOps.mirror(out) if mirror else out
    ImageDraw.Draw(out).text((10, 10), "COPY SHOP 010-1234-5678", fill=(230, 230, 230))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def score(query: Image.Image, gallery: Image.Image, mirrored: bool = False) -> tuple[float, Verification]:
    v = verify_features(query, extract(query, mirrored=mirrored), gallery, extract(gallery))
    return verified_score(v, MatchParams().min_inliers), v


class InMemoryGallery:
    """A gallery held in memory, as rank_gallery reads it: images by id and their local features."""

    def __init__(self, images: list[Image.Image], features: dict) -> None:
        self.pixels = PixelCache(lambda i: images[i])
        self._features = features

    def features(self, i: int):
        return self._features[i]


@pytest.mark.parametrize("mirror", [False, True])
def test_cropped_mirrored_watermarked_copy_verifies_with_its_region(mirror):
    original = photo("wj08-purple_main")
    s, v = score(copier(original, mirror=mirror), original, mirrored=mirror)
    assert s >= THRESHOLD, v
    assert v.mirrored == mirror and 0.7 < v.scale < 1.4
    x0, y0, x1, y1 = v.gallery_box
    assert x0 >= 0 and y0 >= 0 and x1 <= original.width and y1 <= original.height
    assert v.overlap > 0.3


@pytest.mark.parametrize(
    "copied, other",
    [
        ("mh01-gray_main", "mh01-orange_main"),  # same shot, another colour
        ("wj08-purple_main", "wj08-gray_main"),
        ("mh01-gray_main", "mh01-black_main"),  # same chroma, other lightness
        ("wb04-blue_main", "wb04-purple_main"),  # close hues
    ],
)
def test_colour_variant_of_the_copied_shot_is_not_a_copy(copied, other):
    query = copier(photo(copied))
    right, _ = score(query, photo(copied))
    wrong, v = score(query, photo(other))
    assert right >= THRESHOLD
    assert wrong < THRESHOLD, v
    assert right > wrong


@pytest.mark.parametrize(
    "copied, other",
    [
        ("luma-stability-ball", "luma-stability-ball-gray"),  # blue and blue-grey: saturation 0.29
        ("wt07-yellow_main", "wt07-white_main"),  # a yellow top and a white one, the same model
    ],
)
def test_a_colour_variant_is_not_a_saturation_edit_while_a_copiers_saturation_edit_still_verifies(copied, other):
    from PIL import ImageEnhance

    for factor in (0.6, 1.0, 1.6):  # a copier's duller or more vivid version
        query = copier(ImageEnhance.Color(photo(copied)).enhance(factor))
        right, v = score(query, photo(copied))
        assert right >= THRESHOLD, (factor, v)
        wrong, v = score(query, photo(other))
        assert wrong < THRESHOLD, (factor, v)
        assert wrong == 0.0 or v.colour_mismatch >= 0.15, v


def test_unrelated_photos_do_not_verify():
    names = ["mh05-white_main", "wh04-blue_main", "msh05-gray_main", "mt01-gray_main", "luma-yoga-brick"]
    for a in names[:3]:
        for b in names[3:]:
            s, v = score(photo(a), photo(b))
            assert s == 0.0, (a, b, v)


def test_votes_rank_the_source_of_a_cropped_copy_first():
    names = sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    index = VoteIndex.build({i: extract(photo(n)) for i, n in enumerate(names)})
    for target in ("wj08-purple_main", "mj01-yellow_main", "luma-stability-ball"):
        q = copier(photo(target), mirror=True, crop=0.7)
        votes = index.votes(extract(q, mirrored=True))
        assert max(votes, key=votes.get) == names.index(target)


def _match(gid: int, box) -> Match:
    v = Verification(50, 60, box, box, 0.1, False, 1.0, 0.0, "", 0.95, 0.0, False)
    return Match(gid, 0.8, 0.9, v)


def test_regions_many_suspects_match_are_boilerplate_but_a_whole_page_is_not():
    chart = (100, 3700, 750, 4000)
    matches = [(10, _match(1, chart)), (11, _match(1, (270, 3710, 580, 3870))), (12, _match(1, (90, 3720, 760, 4030))),
               (13, _match(1, (0, 0, 860, 4600))), (14, _match(2, chart))]
    frequent = frequent_regions(matches, min_images=3)
    assert set(frequent) == {1}
    assert covered_share(chart, frequent[1]) == 1.0
    assert covered_share((0, 0, 860, 4600), frequent[1]) < 0.2  # the whole copied page stays a finding


def test_template_of_a_clients_pages_is_found(tmp_path):
    from crawler.demo.build import build_demo

    manifest = build_demo(tmp_path / "demo")
    pages = [tmp_path / "demo" / p for p in manifest["client"]["gallery"] if "detail" in p][:2]
    a, b = (Image.open(p).convert("RGB") for p in pages)
    shared = [v for v in shared_regions(a, b) if v.correlation >= 0.85]
    # The brand header above the first product title, and the shipping notice in the lower part
    # of both pages; nothing over the products.
    header = [v for v in shared if v.query_box[3] < 250 and v.gallery_box[3] < 250]
    notice = [v for v in shared if v.query_box[1] > a.height * 0.6 and v.gallery_box[1] > b.height * 0.6]
    assert header, "the shared brand header was not found"
    assert notice, "the shared shipping notice was not found"
    assert len(header) + len(notice) == len(shared), [v.query_box for v in shared]


def test_mirrored_descriptors_by_permutation_match_sift_on_the_flipped_image():
    from pipeline.local import MIRROR, mirrored

    assert sorted(MIRROR) == list(range(128)) and (MIRROR[MIRROR] == np.arange(128)).all()  # an involution
    im = photo("wj08-purple_main")
    permuted = mirrored(extract(im))
    flipped = extract(ImageOps.mirror(im))  # features of the flipped image, positions in its own frame
    flipped_xy = flipped.xy.copy()
    flipped_xy[:, 0] = im.width - flipped_xy[:, 0]
    # Pair keypoints found at the same place (within half a pixel) and compare their descriptors.
    d2 = ((permuted.xy[:, None, :] - flipped_xy[None, :, :]) ** 2).sum(axis=2)
    j = d2.argmin(axis=1)
    same_place = d2[np.arange(len(j)), j] < 0.25
    assert same_place.sum() > 50
    cosine = (permuted.desc[same_place] * flipped.desc[j[same_place]]).sum(axis=1)
    unpermuted = (extract(im).desc[same_place] * flipped.desc[j[same_place]]).sum(axis=1)
    assert np.median(cosine) > 0.9 > np.median(unpermuted)
    # And a mirrored copy verifies on the permuted features alone (one SIFT pass per query).
    q = copier(im, mirror=True)
    v = verify_features(q, mirrored(extract(q)), im, extract(im))
    assert verified_score(v, MatchParams().min_inliers) >= THRESHOLD and v.mirrored


def test_votes_remember_where_they_land():
    names = sorted(p.stem for p in PHOTOS.glob("*.jpg"))[:6]
    feats = {i: extract(photo(n)) for i, n in enumerate(names)}
    index = VoteIndex.build(feats)
    q = copier(photo(names[2]), crop=0.6)
    cast = index.cast(extract(q))
    assert max(cast.counts[False], key=cast.counts[False].get) == 2
    qk, gk = cast.landed(False, 2)
    assert len(qk) == cast.counts[False][2] and (gk >= 0).all()
    # The votes land inside the cropped part of the protected photo (middle 60% of its width).
    x = feats[2].xy[gk, 0]
    w = photo(names[2]).width
    assert np.median(x) > 0.2 * w and np.median(x) < 0.8 * w


def test_a_segment_copied_from_a_long_page_is_found_in_the_band_its_votes_point_to():
    from pipeline.embed import DefaultEmbedder
    from pipeline.index import TileIndex
    from pipeline.match import Query, rank_gallery
    from pipeline.tilecache import embed_tiles
    from pipeline.tiling import GALLERY_TILING, QUERY_TILING

    names = sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    pages = []
    for p in range(3):  # three long pages of seven photos each, 860 px wide, as a detail page is
        parts = [photo(n).resize((860, 1000)) for n in names[p * 7:(p + 1) * 7]]
        page = Image.new("RGB", (860, 7000), "white")
        for i, part in enumerate(parts):
            page.paste(part, (0, i * 1000))
        pages.append(page)
    # The copier takes rows 4000-5600 of page 1 (one and a half photos), at 700 px wide, under a banner.
    segment = pages[1].crop((0, 4000, 860, 5600)).resize((700, 1302))
    query = Image.new("RGB", (700, 1500), (30, 30, 30))
    query.paste(segment, (0, 198))
    emb = DefaultEmbedder()
    tiles = [embed_tiles(p, GALLERY_TILING, emb) for p in pages]
    index = TileIndex(np.concatenate([t.vectors for t in tiles]), np.concatenate([np.full(len(t), i) for i, t in enumerate(tiles)]),
                      np.concatenate([t.boxes for t in tiles]))
    feats = {i: extract(p) for i, p in enumerate(pages)}

    ranked = rank_gallery(Query(query, embed_tiles(query, QUERY_TILING, emb)), index, InMemoryGallery(pages, feats), VoteIndex.build(feats))
    best = ranked[0]
    assert best.gallery_id == 1 and best.score >= THRESHOLD
    x0, y0, x1, y1 = best.verification.gallery_box
    assert 3900 <= y0 and y1 <= 5700 and y1 - y0 > 1000  # the copied rows, not the whole page


def test_keypoints_of_a_long_page_come_back_where_its_content_is_each_once():
    """SIFT describes a page at half its working width, in chunks of 1,280 working rows (1,720
    px of an 860 px page) that overlap a little: positions come back in the page's own pixels,
    and a photo straddling a chunk border gives each of its points once, as it does at the top
    of a short page. A photo by itself is described at full scale, with more points."""
    im = photo("wj08-purple_main").resize((860, 1075))
    page = Image.new("RGB", (860, 6000), "white")
    page.paste(im, (0, 1290))  # row 480 of the page described 320 px wide
    short = Image.new("RGB", (860, 1400), "white")
    short.paste(im, (0, 0))
    alone, f = extract(short), extract(page)
    assert len(f) > 200 and len(extract(im)) > 1.5 * len(f)
    assert np.all((f.xy[:, 1] >= 1290 - 4) & (f.xy[:, 1] <= 1290 + 1075 + 4))
    assert abs(len(f) - len(alone)) <= 0.1 * len(alone)
    # The same point twice would sit at the same place with the same descriptor.
    near = np.linalg.norm(f.xy[:, None] - f.xy[None], axis=2) < 1.0
    same = (f.desc @ f.desc.T) > 0.999
    assert not np.any(np.triu(near & same, 1))
    # Most of the photo's own points are found on the page where it was pasted.
    shifted = alone.xy + np.float32([0, 1290])
    found = (np.linalg.norm(shifted[:, None] - f.xy[None], axis=2) < 2.0).any(axis=1)
    assert found.mean() >= 0.8


def test_a_fit_with_too_few_inliers_is_rejected_before_its_pixels_are_compared():
    original = photo("wj08-purple_main")
    query = copier(original)
    args = (query, extract(query), original, extract(original))
    checked = verify_features(*args)
    assert checked.ok and checked.inliers >= 12 and checked.correlation > 0.9
    skipped = verify_features(*args, min_inliers=checked.inliers + 1)
    assert not skipped.ok and skipped.rejected.startswith("too few inliers")
    assert skipped.inliers == checked.inliers and skipped.gallery_box == checked.gallery_box
    assert skipped.correlation == 0.0 and verified_score(skipped, MatchParams().min_inliers) == 0.0


def test_template_search_can_reuse_the_gallery_vote_index(tmp_path):
    from crawler.demo.build import build_demo
    from pipeline.gallery import template_regions

    manifest = build_demo(tmp_path / "demo")
    names = [p for p in manifest["client"]["gallery"] if "detail" in p][:3]
    names += [p for p in manifest["client"]["gallery"] if "detail" not in p][:2]
    ims = [Image.open(tmp_path / "demo" / p).convert("RGB") for p in names]
    feats = {i: extract(im) for i, im in enumerate(ims)}
    pages = [i for i, n in enumerate(names) if "detail" in n]
    own = template_regions(pages, feats.__getitem__, ims.__getitem__)
    shared = template_regions(pages, feats.__getitem__, ims.__getitem__, votes=VoteIndex.build(feats))
    assert len(own) and set(shared[:, 0]) <= set(pages)  # photos in the shared index are never template

    def rows(found, page):
        covered = np.zeros(ims[page].height, bool)
        for _, _, y0, _, y1 in found[found[:, 0] == page]:
            covered[y0:y1] = True
        return covered

    # The same page rows are template either way. Not the same rows exactly: the photos' points
    # in the shared index are near twins of the pages' photo bands and take some nearest-
    # neighbour places, which moves the found bands' edges by a few lines.
    for page in pages:
        a, b = rows(own, page), rows(shared, page)
        assert a.any() and (a & b).sum() >= 0.9 * (a | b).sum(), page


def test_the_ratio_test_keeps_the_pairs_opencvs_brute_force_matcher_keeps():
    """The blocked matrix-product ratio test against OpenCV's exhaustive matcher, on real RootSIFT
    descriptors (a copied page part and its page among unrelated ones), over several blocks of
    query rows."""
    import cv2

    from pipeline.verify import _MATCH_BLOCK, _ratio_matches

    protected = page_part("copied-page-band.jpg")
    queries = [page_part("copied-part.jpg"), page_part("decoy-part.jpg"), page_part("other-tint-part.jpg")]
    q = np.concatenate([extract(im).desc for im in queries])
    others = [page_part(n) for n in ("protected-page-band.jpg", "beige-chart-page-band.jpg", "size-chart-page-band.jpg")]
    g = np.concatenate([extract(im).desc for im in [protected, *others]])
    assert len(q) > 2 * (_MATCH_BLOCK // len(g)), "the query rows must span several blocks"
    qi, ti, dist = _ratio_matches(q, g, 0.8)
    reference = {}
    for m, n in cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, g, k=2):
        if m.distance < 0.8 * n.distance:
            reference[m.queryIdx] = (m.trainIdx, m.distance)
    got = {int(a): (int(b), float(d)) for a, b, d in zip(qi, ti, dist)}
    # Floating-point order may flip a pair that sits exactly at the ratio's margin.
    assert len(set(got) ^ set(reference)) <= max(1, len(reference) // 500), (len(got), len(reference))
    common = set(got) & set(reference)
    assert len(common) > 100
    assert all(got[i][0] == reference[i][0] and abs(got[i][1] - reference[i][1]) < 1e-4 for i in common)


def test_pages_are_paired_with_the_pages_holding_most_of_their_near_exact_twins(tmp_path):
    """The template search's pairing, vectorised, against the same neighbours tallied plainly:
    each page's strongest descriptors, their 8 nearest vote descriptors, those on other pages at
    RootSIFT similarity 0.9 or more; the 3 pages holding most (ties: the one met first), if 12."""
    from crawler.demo.build import build_demo
    from pipeline import gallery
    from pipeline.local import VOTE_PER_BLOCK

    manifest = build_demo(tmp_path / "demo")
    names = [p for p in manifest["client"]["gallery"] if "detail" in p]
    feats = {i: extract(Image.open(tmp_path / "demo" / p).convert("RGB")) for i, p in enumerate(names)}
    votes = VoteIndex.build(feats)
    strongest = {i: f.strongest(VOTE_PER_BLOCK) for i, f in feats.items()}
    gallery._TEMPLATE_WORK.update(index=votes, strongest=strongest, page_ids=np.array(list(feats)), features=feats.__getitem__,
                                  similarity=0.9, k=8, neighbours=3)
    try:
        paired = 0
        for a in feats:
            sims, hits = votes.search(feats[a].desc[strongest[a]], 8)
            twins: dict[int, list] = {}
            for j in range(len(hits)):
                for sim, hit in zip(sims[j], hits[j]):
                    b = int(votes.owners[hit])
                    if hit >= 0 and b != a and sim >= 0.9:
                        twins.setdefault(b, []).append((int(strongest[a][j]), int(votes.keypoints[hit]), float(np.sqrt(max(0.0, 2 - 2 * sim)))))
            expected = [(b, twins[b]) for b in sorted(twins, key=lambda b: -len(twins[b]))[:3] if len(twins[b]) >= 12]
            _, found = gallery._page_twins(a)
            assert [(b, [(int(x), int(y)) for x, y, _ in arr]) for b, arr in found] == [(b, [t[:2] for t in rows]) for b, rows in expected], a
            assert all(np.allclose(arr[:, 2], [t[2] for t in rows], atol=1e-6) for (_, arr), (_, rows) in zip(found, expected))
            paired += len(found)
        assert paired, "the demo's pages share a template: some pairs must be found"
    finally:
        gallery._TEMPLATE_WORK.clear()


def test_a_second_cluster_of_votes_gets_its_own_band_when_it_is_strong_enough():
    from types import SimpleNamespace

    from pipeline.local import LocalFeatures, Votes
    from pipeline.match import Query, _vote_bands

    rng = np.random.default_rng(0)
    line = np.column_stack([rng.uniform(300, 500, 18), rng.uniform(6265, 6278, 18)])  # a repeated text line
    part = np.column_stack([rng.uniform(200, 650, 16), rng.uniform(2390, 2620, 16)])  # the copied photo
    xy = np.vstack([line, part]).astype(np.float32)
    page = LocalFeatures(xy, np.zeros((len(xy), 128), np.float32), np.ones(len(xy), np.float32), (860, 11815))
    gallery = SimpleNamespace(pixels=lambda gid: SimpleNamespace(size=page.size), features=lambda gid: page)
    query = Query(Image.new("RGB", (884, 1000)), None)

    def bands(n_part: int):
        keep = np.r_[np.arange(18), 18 + np.arange(n_part)]
        votes = Votes({False: {7: len(keep)}, True: {}}, {False: (keep, np.full(len(keep), 7), keep)})
        return _vote_bands(query, gallery, 7, False, votes, [], min_votes=4)

    first, second = bands(16)
    assert first[1] <= 6265 <= first[3] and not first[1] <= 2500 <= first[3]
    assert second[1] <= 2390 and 2620 <= second[3]
    assert len(bands(3)) == 1  # three stray votes are no second place to look


def _hue_rotated(im: Image.Image, angle: float) -> Image.Image:
    """The photo's coloured garment in another hue at the same luma (YCbCr chroma rotated where
    it is strong): SIFT, which sees lightness only, cannot tell such variants apart."""
    ycc = np.asarray(im.convert("YCbCr"), np.float32)
    cb, cr = ycc[..., 1] - 128, ycc[..., 2] - 128
    garment = np.hypot(cb, cr) > 12
    c, s = np.cos(angle), np.sin(angle)
    ycc[..., 1] = np.where(garment, 128 + c * cb - s * cr, ycc[..., 1])
    ycc[..., 2] = np.where(garment, 128 + s * cb + c * cr, ycc[..., 2])
    return Image.fromarray(np.clip(ycc, 0, 255).round().astype(np.uint8), "YCbCr").convert("RGB")


def test_when_the_checks_keep_finding_the_shot_in_other_colours_the_copied_colour_is_looked_for_further():
    from pipeline.embed import DefaultEmbedder
    from pipeline.index import TileIndex
    from pipeline.match import Query, rank_gallery
    from pipeline.tilecache import embed_tiles
    from pipeline.tiling import GALLERY_TILING, QUERY_TILING

    # Three colours of one shot; the copied one (the last) gets the fewest votes, all about equal.
    variants = [_hue_rotated(photo("mh01-orange_main"), a) for a in (2.0, 4.0, 0.0)]
    feats = {i: extract(v) for i, v in enumerate(variants)}
    votes = VoteIndex.build(feats)
    emb = DefaultEmbedder()
    tiles = [embed_tiles(v, GALLERY_TILING, emb) for v in variants]
    index = TileIndex(np.concatenate([t.vectors for t in tiles]), np.concatenate([np.full(len(t), i) for i, t in enumerate(tiles)]),
                      np.concatenate([t.boxes for t in tiles]))

    query = copier(variants[2])
    counts = votes.votes(extract(query))
    assert max(counts, key=counts.get) != 2  # the votes alone would not find it first
    # One candidate, then one more in each fallback round: the first two checks find the shot in
    # another colour, so the third image is checked too.
    params = MatchParams(max_candidates=1, extra_tile_candidates=0, fallback_candidates=1)
    ranked = rank_gallery(Query(query, embed_tiles(query, QUERY_TILING, emb)), index, InMemoryGallery(variants, feats), votes, params)
    assert ranked[0].gallery_id == 2 and ranked[0].score >= THRESHOLD, ranked
    assert all(m.score == 0.0 and m.verification.colour_mismatch >= 0.15 for m in ranked[1:])


def test_when_the_votes_lead_elsewhere_the_next_images_by_tile_similarity_are_checked():
    """A zoomed crop of a nearly textureless product gets its votes from the copier's banner
    text; its tiles still resemble the copied image, which the fallback then checks."""
    from pipeline.index import TileIndex
    from pipeline.match import Query, rank_gallery
    from pipeline.tilecache import TileVectors

    shots = [photo("luma-yoga-brick"), photo("mb02-blue-0"), photo("mh01-gray_main")]
    feats = {i: extract(s) for i, s in enumerate(shots)}
    # The copied image (2) gets no votes at all: its keypoints are not in the vote index.
    votes = VoteIndex.build({0: feats[0], 1: feats[1]})
    # By tile similarity it comes third, behind the two others.
    index = TileIndex(np.eye(3, dtype=np.float32), np.arange(3), np.array([[0, 0, *s.size] for s in shots], np.int32))
    query = copier(shots[2])
    tiles = TileVectors("q", np.float32([[0.59, 0.58, 0.56]]) / np.float32(0.999), np.array([[0, 0, *query.size]], np.int32),
                        np.zeros(1, bool))

    params = MatchParams(max_candidates=1, extra_tile_candidates=1, fallback_candidates=1, fallback_tile_candidates=1)
    ranked = rank_gallery(Query(query, tiles), index, InMemoryGallery(shots, feats), votes, params)
    assert [m.gallery_id for m in ranked][:1] == [2] and ranked[0].score >= THRESHOLD, ranked
    assert all(m.score == 0.0 for m in ranked[1:])


def test_a_variant_whose_only_difference_is_a_small_recoloured_part_is_not_a_copy():
    # The bench's unrelated query u-photo-00471: the orange-waistband shorts, cropped, mirrored
    # and recompressed (JPEG 53). The black pair's waistband is teal: 1% of the matched region.
    query = Image.open(MORE_PHOTOS / "wsh04-orange_main.bench-copy.jpg").convert("RGB")
    right, _ = score(query, photo("wsh04-orange_main"), mirrored=True)
    wrong, v = score(query, photo("wsh04-black_main"), mirrored=True)
    assert right >= THRESHOLD
    assert wrong < THRESHOLD, v


def assert_copy_of_its_shot_only(bench_query: str, own: str, other: str, *, mirrored: bool = False,
                                 min_correlation: float) -> None:
    """A bench query made from photo ``own`` is a copy of it, while against ``other`` (another
    colour of the same shot) its shapes align (at least ``min_correlation``) and only its
    colours tell it apart: a colour mismatch that scores it under the threshold."""
    query = Image.open(MORE_PHOTOS / bench_query).convert("RGB")
    right, v = score(query, photo(own), mirrored=mirrored)
    assert right >= THRESHOLD, v
    wrong, v = score(query, photo(other), mirrored=mirrored)
    assert v.ok and v.correlation >= min_correlation, v
    assert wrong < THRESHOLD and v.colour_mismatch >= 0.15, v


def test_a_jittered_colour_variant_is_not_a_copy_however_well_its_shapes_align():
    """The bench's unrelated query u-photo-00186: the orange-waistband shorts, colour-jittered,
    mirrored, scaled, watermarked and recompressed. Against the black shorts with the teal
    waistband everything but the waistband aligns. With photos described at half scale, as
    pages are, the inliers' hull stopped just under the waistband (a finding at 0.77); photos
    are described at full scale. Against its own photo it is a copy."""
    assert_copy_of_its_shot_only("wsh04-orange_main.bench-unrelated.jpg", "wsh04-orange_main", "wsh04-black_main",
                                 mirrored=True, min_correlation=0.95)


def test_a_coloured_garment_where_the_protected_shot_shows_a_white_one_disagrees():
    # The upper body of the lavender top, against the same shot with a white top: the white top
    # is as light as the studio backdrop, yet the lavender one is content that a copy would show.
    im = photo("wt09-purple_main")
    w, h = im.size
    buf = io.BytesIO()
    im.crop((int(0.3 * w), int(0.1 * h), int(0.7 * w), int(0.6 * h))).save(buf, "JPEG", quality=53)
    query = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    right, _ = score(query, im)
    wrong, v = score(query, photo("wt09-white_main"))
    assert right >= THRESHOLD
    assert wrong < THRESHOLD, v
    assert v.disagreement >= 0.3, v


def test_a_pale_top_where_the_protected_shot_shows_a_white_one_is_another_variant():
    """The bench's unrelated query u-photo-00155: a crop of the lavender top, colour-jittered,
    mirrored, between a copier's banners. Against the white top of the same shot everything it
    shows aligns; the lavender is a chroma of about 10 from the white, within every pixel
    tolerance, and the pair scored 0.72. No global edit of a copier tints a white part."""
    assert_copy_of_its_shot_only("wt09-purple_main.bench-unrelated.jpg", "wt09-purple_main", "wt09-white_main",
                                 mirrored=True, min_correlation=0.9)


@pytest.mark.parametrize("other", ["wsh09-white_main", "wsh09-green_main"])
def test_a_lining_in_another_colour_is_another_variant(other):
    """The bench's unrelated query u-photo-00081: the legs and teal lining of the grey shorts,
    cropped, jittered, rotated and watermarked. Against the shots with a white and a green
    lining the inliers' hull holds the legs and only a corner of the lining: it scored 0.85 and
    0.73. Against its own shot it is a copy."""
    assert_copy_of_its_shot_only("wsh09-gray_main.bench-unrelated.jpg", "wsh09-gray_main", other, min_correlation=0.95)


@pytest.mark.parametrize("name, colour, opacity", [
    ("wt09-white_main", (220, 40, 60), 160),  # red over the white top and backdrop
    ("wt09-white_main", (250, 160, 60), 255),  # orange
    ("wt09-purple_main", (250, 160, 60), 255),  # orange over the lavender top
    ("wj08-purple_main", (220, 40, 60), 255),  # red over a purple jacket
])
def test_a_copiers_coloured_shop_name_over_the_photo_is_no_recolour(name, colour, opacity):
    """Copiers stamp their shop's name on the photo, often in colour. Over a white top its glyphs
    are tinted where the protected photo is neutral, as a lavender top is; over a coloured
    garment they are another colour, as a recoloured waistband is. What tells them apart is the
    outline: a recoloured part's follows the protected photo's edges, glyphs do not."""
    im = photo(name).convert("RGBA")
    w, h = im.size
    stamp = Image.new("RGBA", im.size, (0, 0, 0, 0))
    ImageDraw.Draw(stamp).text((int(0.3 * w), int(0.45 * h)), "스타일마켓", font=load_font(w // 9, bold=True),
                               fill=(*colour, opacity))
    query = copier(Image.alpha_composite(im, stamp).convert("RGB"))
    right, v = score(query, photo(name))
    assert right >= THRESHOLD, v


PAGES = Path(__file__).resolve().parent / "data" / "pages"


def page_part(name: str) -> Image.Image:
    return Image.open(PAGES / name).convert("RGB")


def narrowed(part: Image.Image, width: int, quality: int = 70) -> Image.Image:
    """A page part as a copier reposts it: resized to another width, recompressed."""
    part = part.resize((width, round(part.height * width / part.width)))
    buf = io.BytesIO()
    part.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_a_size_chart_with_other_numbers_in_the_same_template_is_not_a_copy():
    """A part of another page of the client's brand: the same size-chart frame and notices, other
    numbers. Its pixels correlate at 0.994 (most of them are frame and background) but the
    digits disagree, while a copy reproduces every glyph. The frame and notices are the client's
    template, which the match drops outright (``template_share``)."""
    wrong, v = score(page_part("decoy-part.jpg"), page_part("protected-page-band.jpg"))
    assert not v.photo and v.correlation >= 0.99, v
    # More than any copy of the bench shows (0.038), though the frame dilutes the digits: 0.100
    # with full-scale SIFT, 0.075 at half scale, where the score alone (0.49) is not enough.
    assert v.edge_disagreement >= 0.06 and wrong < 0.6, v
    # Where the template search of the client's pages put the size chart and notices on this band.
    template = [(0, 379, 640, 1132)]
    assert covered_share(v.gallery_box, template) >= MatchParams().template_share
    # The bench's copy whose edges disagree most (recompressed, watermarked) still verifies.
    right, v = score(page_part("copied-part.jpg"), page_part("copied-page-band.jpg"))
    assert right >= THRESHOLD and v.edge_disagreement < 0.05, v


def test_only_edges_outside_the_clients_template_count_as_evidence_of_a_copied_page_part():
    """A part of another page of the client's brand whose size chart (other numbers) sits above
    the brand's notice: matched on both, its edges disagree at 0.016 overall, level with what
    recompression and a watermark leave on copies (the bench's q00115, a finding at 0.96).
    The notice is the client's template (every page of the brand shows it) and proves nothing;
    outside it, the size chart's digits disagree. A copy of the same region still verifies."""
    protected = page_part("size-chart-page-band.jpg")
    # Where the template search of the client's pages put the notice on this band.
    template = [(0, 706, 860, 1325)]
    decoy = page_part("size-chart-decoy-part.jpg")
    fq, fg = extract(decoy), extract(protected)
    blind = verify_features(decoy, fq, protected, fg)
    assert verified_score(blind, MatchParams().min_inliers) >= THRESHOLD and blind.edge_disagreement < 0.05, blind
    v = verify_features(decoy, fq, protected, fg, template=template)
    assert v.ok and v.correlation >= 0.99 and v.edge_disagreement >= 0.1, v
    assert verified_score(v, MatchParams().min_inliers) == 0.0
    part = narrowed(protected.crop((0, 250, 860, protected.height)), 700)
    v = verify_features(part, extract(part), protected, fg, template=template)
    assert verified_score(v, MatchParams().min_inliers) >= THRESHOLD and v.edge_disagreement < 0.05, v


def test_the_same_words_on_a_band_of_another_tint_are_not_a_copy():
    """A size chart's title and column names in the same font on a light-blue band, against a
    protected page's on a beige band: the glyphs align (correlation 0.994) and the corrected
    colours stay within tolerance, but the two regions' tints point opposite ways, which no
    copier's saturation change or slight cast explains. The protected band itself, resized and
    recompressed, still verifies.

    The band matched is 82 px tall: the check now rejects it as two lines of text
    (``PAGE_MIN_BAND``) before comparing pixels. With that bound lifted the tint still turns;
    the half-scale fit's hull (correlation 0.89, colour mismatch 0.13) would score 0 anyway."""
    from pipeline.verify import WORK_HEIGHT, WORK_WIDTH, _fit, _good_matches, _Side

    protected = page_part("beige-chart-page-band.jpg")
    part = page_part("other-tint-part.jpg")
    wrong, v = score(part, protected)
    assert wrong == 0.0 and v.rejected.startswith("matched band too short"), v
    q = _Side.with_features(part, None, extract(part), WORK_WIDTH, WORK_HEIGHT)
    g = _Side.with_features(protected, None, extract(protected), WORK_WIDTH, WORK_HEIGHT)
    v, _ = _fit(q, g, *_good_matches(q, g, 0.8), min_band=0.0)
    assert not v.photo and v.ok and v.correlation >= 0.85, v  # 0.994 with full-scale SIFT's fit
    assert verified_score(v, MatchParams().min_inliers) == 0.0 and v.tint_turned, v
    right, v = score(narrowed(protected.crop((0, 900, 860, protected.height)), 700), protected)
    assert right >= THRESHOLD and not v.tint_turned and v.colour_mismatch < 0.05, v


def test_two_lines_of_stock_text_on_a_detail_page_are_no_evidence_of_a_copy():
    """The bench's unrelated query u-page-00081, a part of another shop's page: its product
    description shares two stock sentences with a protected page, glyph for glyph on the same
    background (the rest differs). The matched band is 82 px tall (a finding at 0.44 before
    bands shorter than a sixth of the page's width were rejected). A copy of the protected
    page's title block and photo still verifies."""
    protected = page_part("stock-lines-page-band.jpg")
    fg = extract(protected)
    part = page_part("stock-lines-part.jpg")
    # Where the template search of the client's pages put the brand header on this page.
    template = [(0, 0, 860, 258)]
    v = verify_features(part, extract(part), protected, fg, template=template)
    assert v.rejected.startswith("matched band too short"), v
    assert v.gallery_box[3] - v.gallery_box[1] < protected.width / 6
    assert verified_score(v, MatchParams().min_inliers) == 0.0
    copy = narrowed(protected.crop((0, 250, 860, 1100)), 700)
    v = verify_features(copy, extract(copy), protected, fg, template=template)
    assert verified_score(v, MatchParams().min_inliers) >= THRESHOLD, v


def test_a_brand_header_of_two_short_lines_is_recorded_as_template():
    """Two protected pages of one brand open with the same header (its name over a rule and a
    short slogan) above different products. Its inliers' hull is about 350 x 120 px, smaller
    than a copy's smallest region, yet it is the brand's template: a part of any page of the
    brand shows it."""
    a, b = page_part("header-page-top.jpg"), page_part("header-other-page-top.jpg")
    shared = [v for v in shared_regions(a, b) if v.correlation >= 0.85]
    headers = [v for v in shared if v.query_box[3] < 300 and v.gallery_box[3] < 300]
    assert headers, [v.query_box for v in shared]
    assert all(v.query_box[1] < 100 for v in headers)
    # Nothing below the header is shared: the products differ.
    assert all(v.query_box[1] < 300 for v in shared), [v.query_box for v in shared]


def test_a_fit_whose_footprint_misses_the_protected_crop_compares_nothing():
    """The pixel check of a transform that puts the query outside (or on a sliver of) the
    protected crop: nothing to compare, every measure 0, no tint turn."""
    from pipeline.verify import aligned_agreement

    rgb = np.asarray(photo("wj08-purple_main").resize((200, 250)))
    hull = np.float32([[10, 10], [100, 10], [100, 100]])
    for shift in (1000.0, 198.0):  # wholly outside; a 2 px sliver at the right edge
        model = np.float32([[1, 0, shift], [0, 1, 0]])
        assert aligned_agreement(rgb, rgb, model, hull) == (0.0, 0.0, 0.0, 0.0, False)


def test_a_pixel_check_told_what_it_protects_measures_what_the_score_reads_unchanged():
    """The overlap disagreement is read for photos only, the edge disagreement for pages only: a
    check told which it protects skips the other and returns the rest exactly as a full one."""
    from pipeline.verify import aligned_agreement

    lavender, white = (np.asarray(photo(n).resize((320, 400))) for n in ("wt09-purple_main", "wt09-white_main"))
    model = np.float32([[1, 0, 3], [0, 1, -2]])
    hull = np.float32([[60, 40], [260, 40], [260, 300], [60, 300]])
    full = aligned_agreement(lavender, white, model, hull)
    assert full[2] > 0 and full[3] > 0  # both measured
    as_photo = aligned_agreement(lavender, white, model, hull, photo=True)
    as_page = aligned_agreement(lavender, white, model, hull, photo=False)
    assert as_photo == (full[0], full[1], full[2], 0.0, full[4])
    assert as_page == (full[0], full[1], 0.0, full[3], full[4])


def test_a_plain_photo_between_text_banners_keeps_points_to_vote_with():
    """A long page's text responds far more strongly than a plain photo on it (a grey sleeve):
    ranked over the whole page, the photo keeps none of its points in the vote index, and a
    zoomed, watermarked copy of it has nothing to vote for. Every band keeps its share."""
    import random

    from pipeline import synth
    from pipeline.local import VOTE_PER_BLOCK

    lines = ["세탁 후에도 변형이 적어 오래 입을 수 있습니다.", "활동성을 고려한 패턴으로 움직임이 편합니다.",
             "교환 반품은 고객센터 접수 후 가능합니다.", "매일 입기 좋은 데일리 아이템으로 추천드려요."]

    def text_block(seed: int) -> Image.Image:
        rng = random.Random(seed)
        banner = synth.render_banner(860, [rng.choice(lines) for _ in range(16)], synth.random_style(rng),
                                     title="HANBIT 상세정보", min_height=860)
        return banner.resize((860, 860))

    tee = photo("mt01-gray_main")
    w, h = tee.size
    plain = tee.crop((int(w * 0.05), int(h * 0.15), int(w * 0.45), int(h * 0.55))).resize((860, 860))
    pages = []
    for p in range(3):
        parts = [text_block(p * 10 + i) for i in range(6)]
        if p == 1:
            parts.insert(3, plain)
        page = Image.new("RGB", (860, sum(x.height for x in parts)), "white")
        y = 0
        for part in parts:
            page.paste(part, (0, y))
            y += part.height
        pages.append(page)
    feats = {i: extract(p) for i, p in enumerate(pages)}
    in_photo = feats[1].inside((0, 3 * 860, 860, 4 * 860))  # one band (640 working rows)
    # Ranked over the whole page, the photo keeps few of its points (2 of 200 with full-scale
    # SIFT, whose finest octave gave the text many more; 18 of 65 at half scale).
    assert in_photo.sum() >= 40 and in_photo[feats[1].strongest(VOTE_PER_BLOCK)].sum() <= 0.3 * in_photo.sum()
    assert in_photo[feats[1].strongest_in_every_band(VOTE_PER_BLOCK)].sum() >= 0.6 * in_photo.sum()

    copy = synth.watermark(synth.start(plain.crop((100, 150, 700, 750)).resize((700, 700))), "스타일마켓",
                           random.Random(1), tiled=True)
    votes = VoteIndex.build(feats).votes(extract(synth.jpeg(copy, 70).image))
    assert max(votes, key=votes.get) == 1 and votes[1] >= MatchParams().min_votes, votes
