"""Embedders: turn image tiles into L2-normalised vectors (weight-free default, or Unicom)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """What the tile pipeline, FAISS matching, ``search`` and ``eval`` need of a model.

    ``id`` names the model and its version; it is part of the vector-cache key, so change it
    whenever the vectors an embedder produces change.
    """

    id: str
    dim: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors, in input order."""
        ...


@dataclass(frozen=True)
class Embeddings:
    """Vectors with their ids, checked before they reach an index."""

    ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, d) float32

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ValueError(f"vectors must be a 2-D float32 array, got {self.vectors.dtype} {self.vectors.shape}")
        if len(self.ids) != len(self.vectors):
            raise ValueError(f"{len(self.ids)} ids for {len(self.vectors)} vectors")
        if not np.isfinite(self.vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError("ids are not unique")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class DefaultEmbedder:
    """Weight-free tile descriptor: nothing to download, deterministic, fast on CPU.

    Three parts, concatenated with weights and L2-normalised:
    - layout: a 16x16 greyscale thumbnail, mean-centred and normalised (tolerant of
      recompression, small shifts and thin overlays such as watermarks);
    - structure: a 4x4 grid of 8-bin gradient-orientation histograms, square-rooted, centred and
      normalised (robust to colour and contrast changes);
    - colour: 4x4 block means of the two opponent chroma channels, on a fixed scale (not
      normalised), so grey pages carry no colour signal while colour variants of one shot differ.
    Centring makes unrelated tiles score near 0 rather than sharing a positive offset.
    """

    id = "default-v1"
    thumb = 16
    grid = 4
    bins = 8
    dim = thumb * thumb + grid * grid * bins + grid * grid * 2
    weights = (1.0, 0.7, 2.0)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(im) for im in images]).astype(np.float32)

    def _one(self, im: Image.Image) -> np.ndarray:
        rgb = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BOX), dtype=np.float32) / 255.0
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        layout = grey.reshape(self.thumb, 4, self.thumb, 4).mean(axis=(1, 3)).ravel()
        layout = _unit(layout - layout.mean())
        gy, gx = np.gradient(grey)
        mag = np.hypot(gx, gy)
        ang = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation
        b = np.minimum((ang / np.pi * self.bins).astype(np.int64), self.bins - 1)
        cell = 64 // self.grid
        c = np.arange(64) // cell
        cell_idx = (c[:, None] * self.grid + c[None, :]) * self.bins + b
        hog = np.sqrt(np.bincount(cell_idx.ravel(), weights=mag.ravel(), minlength=self.grid * self.grid * self.bins))
        hog = _unit(hog - hog.mean())
        r, g, bl = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        chroma = np.stack([(r - g) / np.sqrt(2), (r + g - 2 * bl) / np.sqrt(6)], -1)
        colour = chroma.reshape(self.grid, cell, self.grid, cell, 2).mean(axis=(1, 3)).ravel() / np.sqrt(self.grid * self.grid)
        v = np.concatenate([layout * self.weights[0], hog * self.weights[1], colour * self.weights[2]])
        return _unit(v)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.zeros_like(v)


def get_embedder(spec: str = "default", weights: str | Path | None = None, weights_dir: str | Path | None = None) -> Embedder:
    """Build the embedder named by ``spec``: ``default`` or ``unicom:<model name>``.

    For Unicom, ``weights`` is an explicit checkpoint file; otherwise the file is looked up
    in ``weights_dir`` under its released name.
    """
    if spec in ("default", DefaultEmbedder.id):
        return DefaultEmbedder()
    if spec.startswith("unicom:"):
        from pipeline.unicom_embedder import UnicomEmbedder  # torch is imported only here

        return UnicomEmbedder(spec.split(":", 1)[1], weights=weights, weights_dir=weights_dir)
    raise ValueError(f"unknown embedder {spec!r}: use 'default' or 'unicom:<name>' (see `copywatch models list`)")
