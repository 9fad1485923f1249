"""Content store and safe decoding, including awkward image files."""
import io

import numpy as np
import pytest
from PIL import Image

from pipeline import images
from pipeline.store import ContentStore, sha256_bytes


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_store_keeps_original_bytes_once(tmp_path):
    store = ContentStore(tmp_path)
    data = _bytes(Image.new("RGB", (40, 30), "red"), "PNG")
    sha, new = store.put(data)
    assert new and sha == sha256_bytes(data)
    assert store.read(sha) == data
    assert store.put(data) == (sha, False)
    assert len(list(tmp_path.rglob("*"))) == 4  # objects/ab/cd/<sha>: three folders and one file
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


@pytest.mark.parametrize(
    "make",
    [
        lambda: _bytes(Image.new("CMYK", (50, 40), (0, 255, 0, 0)), "JPEG"),
        lambda: _bytes(Image.fromarray(np.full((40, 50), 40000, np.uint16)), "PNG"),
        lambda: _bytes(Image.new("RGBA", (50, 40), (255, 0, 0, 0)).convert("P"), "PNG"),
        lambda: _bytes(Image.new("RGB", (50, 40), "blue"), "WEBP"),
        lambda: _bytes(Image.new("L", (50, 40), 128), "GIF", save_all=True, append_images=[Image.new("L", (50, 40), 0)]),
    ],
    ids=["cmyk", "16bit", "palette-alpha", "webp", "animated-gif"],
)
def test_awkward_formats_decode_to_rgb(make):
    im = images.decode(make())
    assert im.mode == "RGB" and im.size == (50, 40)


def test_exif_rotation_is_applied():
    im = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = images.decode(_bytes(im, "JPEG", exif=exif))
    assert out.size == (20, 60)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"this is not an image", "not a decodable image"),
        (_bytes(Image.new("RGB", (200, 200), "red"), "JPEG")[:300], "corrupt or truncated"),
        (_bytes(Image.new("RGB", (4, 4), "red"), "PNG"), "too small"),
    ],
)
def test_bad_input_is_a_reason_not_a_crash(data, reason):
    with pytest.raises(images.BadImage) as e:
        images.decode(data)
    assert reason in e.value.reason


def test_decompression_bomb_is_refused_from_the_header():
    big = _bytes(Image.new("L", (3000, 3000), 0), "PNG")
    with pytest.raises(images.BadImage) as e:
        images.decode(big, max_pixels=1_000_000)
    assert "too large" in e.value.reason
