"""FAISS tile indexes: one per client gallery, saved beside a table of what each row is."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class TileIndex:
    """Exact inner-product search over L2-normalised gallery tile vectors.

    ``owners[i]`` is the gallery image id of row ``i`` and ``boxes[i]`` its tile box in that
    image. ``templates`` rows are (gallery image id, x0, y0, x1, y1): regions the client's own
    pages share (brand headers, shipping notices), which must not make findings. The gallery is
    small and indexed once, so exact search (``IndexFlatIP``) is both fast enough and free of
    approximation error.
    """

    vectors: np.ndarray  # (n, d) float32
    owners: np.ndarray  # (n,) int64 gallery image ids
    boxes: np.ndarray  # (n, 4) int32
    fingerprint: str = ""
    templates: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.int64))

    def __post_init__(self) -> None:
        import faiss

        if len(self.vectors) != len(self.owners) or len(self.owners) != len(self.boxes):
            raise ValueError("vectors, owners and boxes must have the same length")
        if len(self.vectors) and not np.isfinite(self.vectors).all():
            raise ValueError("index vectors contain NaN or infinite values")
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        self._index = faiss.IndexFlatIP(max(self.dim, 1))
        if len(self.vectors):
            self._index.add(np.ascontiguousarray(self.vectors, dtype=np.float32))

    def template_boxes(self, gallery_id: int) -> list[tuple[int, int, int, int]]:
        rows = self.templates[self.templates[:, 0] == gallery_id] if len(self.templates) else []
        return [tuple(int(v) for v in r[1:]) for r in rows]

    def __len__(self) -> int:
        return len(self.owners)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query: (scores, row ids), row id -1 where fewer exist."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if len(self) == 0 or len(q) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        scores, rows = self._index.search(q, min(k, len(self)))
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        return scores, rows

    def save(self, path: Path) -> None:
        """Write ``path`` (.npz with vectors, owners, boxes) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, vectors=self.vectors, owners=self.owners, boxes=self.boxes, fingerprint=np.array(self.fingerprint), templates=self.templates)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TileIndex":
        with np.load(path) as z:
            return cls(z["vectors"], z["owners"], z["boxes"], str(z["fingerprint"]), z["templates"])


def fingerprint(parts: list[str]) -> str:
    """A short hash of what an index was built from (gallery hashes, tiling, embedder)."""
    return hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()[:16]
