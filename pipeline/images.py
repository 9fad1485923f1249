"""Safe image decoding: orientation, colour modes, animation and decompression bombs handled."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)


class BadImage(ValueError):
    """An input that cannot be used as an image; ``reason`` is recorded, the run goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(data: bytes | str | Path, *, max_pixels: int = 80_000_000) -> Image.Image:
    """Decode to an RGB image, EXIF-rotated, first frame of animations.

    Raises :class:`BadImage` for anything unusable: not an image, truncated, or larger than
    ``max_pixels`` (checked from the header before decoding the pixels).
    """
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
            w, h = im.size
            if w * h > max_pixels:
                raise BadImage(f"too large: {w}x{h} pixels exceeds the limit of {max_pixels}")
            if w < 8 or h < 8:
                raise BadImage(f"too small: {w}x{h} pixels")
            im.seek(0)
            im.load()
    except BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"not a decodable image: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"corrupt or truncated image: {e}") from e
    im = ImageOps.exif_transpose(im)
    return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB with transparency flattened onto white and 16-bit greyscale scaled down."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return bg
    return im.convert("RGB")
