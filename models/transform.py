"""Unicom preprocessing: bicubic resize of the short side, centre crop, RGB, [0,1], CLIP mean/std."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from models.registry import UnicomConfig

#: Modes that PIL resizes as they are and that convert to RGB afterwards, as the reference
#: (torchvision Resize -> CenterCrop -> convert("RGB")) does. Other modes (palette, 1-bit,
#: 16-bit, ...) are converted to RGB first: PIL would resize a palette image with nearest
#: neighbour, whatever filter is asked for.
_RESIZE_AS_IS = frozenset({"RGB", "RGBA", "L", "LA", "RGBX", "CMYK", "YCbCr"})


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Scale so that the short side is ``size`` (long side rounded down), PIL bicubic."""
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ValueError(f"image has no pixels: {w}x{h}")
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BICUBIC)


def centre_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (offsets rounded half to even, as torchvision)."""
    w, h = img.size
    if w < size or h < size:
        raise ValueError(f"cannot crop {size}x{size} from {w}x{h}")
    left = int(round((w - size) / 2.0))
    top = int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class UnicomTransform:
    """PIL image -> normalised (3, S, S) float32 tensor, exactly as the reference preprocessing."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode not in _RESIZE_AS_IS:
            img = img.convert("RGB")
        img = centre_crop(resize_short_side(img, self.input_size), self.input_size)
        if img.mode != "RGB":
            img = img.convert("RGB")
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return x.sub(mean).div(std)

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Stack preprocessed images into (n, 3, S, S)."""
        if not images:
            return torch.zeros((0, 3, self.input_size, self.input_size), dtype=torch.float32)
        return torch.stack([self(im) for im in images])


def build_transform(config: UnicomConfig) -> UnicomTransform:
    """The preprocessing that belongs to ``config``."""
    return UnicomTransform(config.input_size, tuple(config.mean), tuple(config.std))
