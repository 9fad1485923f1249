"""Tiling: normalise an image's width, cut overlapping square tiles, drop blank ones."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TilingParams:
    """How an image is cut into tiles.

    The image is resized to ``width`` pixels wide; square tiles of ``width`` pixels are cut every
    ``stride`` pixels down the page (the last one flush with the bottom). An image no taller than
    ``whole_ratio`` times its width is one tile. Tiles whose greyscale standard deviation is
    below ``min_std`` (on 0..255) are blank and skipped. With ``mirror``, every tile is also
    produced flipped left-right (the query side does this to catch mirrored copies).
    """

    width: int = 320
    stride: int = 160
    whole_ratio: float = 1.5
    min_std: float = 6.0
    mirror: bool = False

    @property
    def key(self) -> str:
        """Stable id of these parameters; part of the vector-cache key."""
        return f"w{self.width}-st{self.stride}-wr{self.whole_ratio:g}-sd{self.min_std:g}{'-m' if self.mirror else ''}"


#: Dense tiles for the (small) protected gallery, sparse ones for the (large) daily crawl.
GALLERY_TILING = TilingParams(stride=40)
QUERY_TILING = TilingParams(stride=160, mirror=True)


@dataclass(frozen=True)
class TileCut:
    """One tile: its pixels (tile-sized, RGB), its box in the original image, and orientation."""

    image: Image.Image
    box: tuple[int, int, int, int]
    mirrored: bool = False


def tile_image(im: Image.Image, params: TilingParams) -> list[TileCut]:
    """Cut ``im`` (RGB) into tiles; boxes are in the original image's pixel coordinates."""
    w, h = im.size
    scale = params.width / w
    nh = max(1, round(h * scale))
    norm = im.resize((params.width, nh), Image.Resampling.BILINEAR)
    if nh <= params.whole_ratio * params.width:
        spans = [(0, nh)]
    else:
        side = params.width
        starts = list(range(0, nh - side + 1, params.stride))
        if starts[-1] != nh - side:
            starts.append(nh - side)
        spans = [(s, s + side) for s in starts]
    grey = np.asarray(norm.convert("L"), dtype=np.float32)
    tiles: list[TileCut] = []
    for y0, y1 in spans:
        if float(grey[y0:y1].std()) < params.min_std:
            continue
        crop = norm.crop((0, y0, params.width, y1))
        box = (0, int(round(y0 / scale)), w, h if y1 >= nh else min(h, int(round(y1 / scale))))
        tiles.append(TileCut(crop, box, False))
        if params.mirror:
            tiles.append(TileCut(ImageOps.mirror(crop), box, True))
    return tiles
