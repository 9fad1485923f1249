"""Tests for pipeline.synth: fonts, banners, detail pages and copier transforms with ground-truth boxes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import synth

PHOTOS = Path(__file__).resolve().parents[1] / "crawler" / "demo" / "photos" / "magento-luma"


def photo(stem: str) -> Image.Image:
    with Image.open(PHOTOS / f"{stem}.jpg") as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def page() -> synth.DetailPage:
    photos = [photo("mh01-gray_main"), photo("mh01-gray_back"), photo("mh01-orange_main")]
    return synth.compose_detail_page(photos, random.Random(7), photo_ids=["a", "b", "c"], brand="한빛어패럴")


def region_error(a: Image.Image, box_a: synth.Box, b: Image.Image, box_b: synth.Box, *, flip: bool = False) -> float:
    """Mean absolute difference (0-255) between two regions brought to a common small size."""
    ra = a.crop(box_a).resize((64, 64), Image.Resampling.BILINEAR)
    rb = b.crop(box_b).resize((64, 64), Image.Resampling.BILINEAR)
    if flip:
        ra = ra.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return float(np.abs(np.asarray(ra, dtype=np.float32) - np.asarray(rb, dtype=np.float32)).mean())


def test_find_font_locates_nanum() -> None:
    assert synth.find_font().name == "NanumGothic.ttf"
    assert synth.find_font(bold=True).name == "NanumGothicBold.ttf"


def test_missing_font_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth, "FONT_DIRS", (tmp_path,))
    monkeypatch.delenv("COPYWATCH_FONT_DIR", raising=False)
    synth.find_font.cache_clear()
    try:
        with pytest.raises(synth.FontNotFoundError, match="apt-get install fonts-nanum"):
            synth.find_font()
    finally:
        synth.find_font.cache_clear()


def test_banner_has_text_and_requested_width() -> None:
    style = synth.BannerStyle()
    banner = synth.render_banner(600, ["배송비 3,000원", "교환·반품 안내"], style, title="배송안내")
    assert banner.width == 600
    pixels = np.asarray(banner)
    assert (pixels != np.array(style.background)).any(axis=2).mean() > 0.01
    again = synth.render_banner(600, ["배송비 3,000원", "교환·반품 안내"], style, title="배송안내")
    assert banner.tobytes() == again.tobytes()


def test_long_korean_line_wraps_inside_width() -> None:
    banner = synth.render_banner(200, ["가나다라마바사아자차카타파하" * 3], synth.BannerStyle(padding=10))
    assert banner.width == 200
    assert banner.height > 100


def test_size_chart_is_a_table() -> None:
    chart = synth.size_chart(860, random.Random(1))
    assert chart.width == 860 and chart.height > 150


def test_detail_page_layout(page: synth.DetailPage) -> None:
    assert page.image.width == 860
    assert 3000 <= page.image.height <= 16000
    assert page.blocks[0].kind == "header" and page.blocks[-1].kind == "notice"
    assert any(b.kind == "size_chart" for b in page.blocks)
    assert {b.source for b in page.blocks if b.kind == "photo"} == {"a", "b", "c"}
    tops = [b.box[1] for b in page.blocks]
    bottoms = [b.box[3] for b in page.blocks]
    assert tops[0] == 0 and bottoms[-1] == page.image.height
    assert tops[1:] == bottoms[:-1]


def test_detail_page_is_deterministic() -> None:
    photos = [photo("wj08-gray_main")]
    first = synth.compose_detail_page(photos, random.Random(3), min_height=3000, max_height=4000)
    second = synth.compose_detail_page(photos, random.Random(3), min_height=3000, max_height=4000)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.blocks == second.blocks


def test_shared_boilerplate_is_reused_verbatim() -> None:
    notice = synth.shipping_notice(860, random.Random(5))
    one = synth.compose_detail_page([photo("mh05-white_main")], random.Random(1), notice=notice)
    two = synth.compose_detail_page([photo("wh04-blue_main")], random.Random(2), notice=notice)
    for result in (one, two):
        box = result.blocks[-1].box
        assert result.image.crop(box).tobytes() == notice.tobytes()


def test_copy_segment_boxes_match_content(page: synth.DetailPage) -> None:
    rng = random.Random(11)
    for _ in range(5):
        copy = synth.copy_segment(page.image, rng, shop="카피몰", quality=95)
        width = copy.image.width
        assert 0.6 * 640 - 1 <= width <= 1000
        l, t, r, b = copy.box
        assert 0 <= l < r <= width and 0 < t < b < copy.image.height  # banners above and below
        assert copy.source_box is not None
        sl, st, sr, sb = copy.source_box
        assert 0 <= sl < sr <= page.image.width and 0 <= st < sb <= page.image.height
        assert region_error(copy.image, copy.box, page.image, copy.source_box) < 12


def test_mirror_then_crop_maps_back_to_source() -> None:
    source = photo("mh01-orange_main")
    copy = synth.crop(synth.mirror(synth.start(source)), (40, 30, 300, 400))
    assert copy.mirrored and copy.box == (0, 0, 260, 370)
    assert copy.source_box == (source.width - 300, 30, source.width - 40, 400)
    assert region_error(copy.image, copy.box, source, copy.source_box, flip=True) < 1


def test_watermark_changes_pixels_not_geometry() -> None:
    rng = random.Random(2)
    base = synth.start(photo("wb04-blue_main"))
    for tiled in (True, False):
        marked = synth.watermark(base, "COPY SHOP", rng, opacity=120, tiled=tiled)
        assert marked.image.size == base.image.size and marked.box == base.box
        assert marked.image.tobytes() != base.image.tobytes()


def test_resize_crop_and_rotate_keep_boxes_inside() -> None:
    rng = random.Random(4)
    t = synth.start(photo("mj01-yellow_main"))
    t = synth.resize_width(t, 333)
    assert t.image.width == 333 and t.box[2] == 333
    t = synth.crop_area(t, rng)
    t = synth.rotate(t, 4)
    l, top, r, b = t.box
    assert 0 <= l < r <= t.image.width and 0 <= top < b <= t.image.height
    jittered = synth.colour_jitter(t, rng)
    assert jittered.image.size == t.image.size


def test_jpeg_quality_controls_size() -> None:
    image = photo("ws03-red_main")
    assert len(synth.jpeg_bytes(image, 40)) < len(synth.jpeg_bytes(image, 95))
    assert synth.jpeg(synth.start(image), 70).image.size == image.size
