"""Local features: RootSIFT keypoints per image, and a voting index that proposes candidates."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

#: Images are described at this width (small ones enlarged at most 2x), in square-ish chunks.
WORK_WIDTH, MAX_UPSCALE = 640, 2.0
#: Keypoints kept per WORK_WIDTH x WORK_WIDTH block of the working image.
PER_BLOCK = 1500
#: Of those, the strongest this many per block go into the voting index.
VOTE_PER_BLOCK = 300
#: RootSIFT similarity (inner product) from which two descriptors can count as the same point.
VOTE_SIMILARITY = 0.8
#: A neighbour votes only if it is this much closer than the farthest of the k retrieved
#: (Lowe's ratio test against the database: generic descriptors of flat or blurred areas are
#: close to many images and vote for none).
VOTE_RATIO = 0.8


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one image: positions in original pixels, RootSIFT descriptors, responses.

    With ``mirrored`` the features were taken from the left-right flipped image; positions are
    still in the original's coordinates.
    """

    xy: np.ndarray  # (n, 2) float32
    desc: np.ndarray  # (n, 128) float32, L2-normalised (RootSIFT)
    response: np.ndarray  # (n,) float32
    size: tuple[int, int]
    mirrored: bool = False

    def __len__(self) -> int:
        return len(self.xy)

    def strongest(self, per_block: int) -> np.ndarray:
        """Indices of the strongest keypoints, about ``per_block`` per working block."""
        w, h = self.size
        f = min(MAX_UPSCALE, WORK_WIDTH / w)
        blocks = max(1.0, (w * f) * (h * f) / (WORK_WIDTH * WORK_WIDTH))
        n = int(per_block * blocks)
        return np.argsort(-self.response)[:n]

    def inside(self, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        return (self.xy[:, 0] >= x0) & (self.xy[:, 0] < x1) & (self.xy[:, 1] >= y0) & (self.xy[:, 1] < y1)


_sift = None


def _detector():
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=PER_BLOCK * 2)
    return _sift


def root_sift(desc: np.ndarray) -> np.ndarray:
    """Hellinger-normalised SIFT (Arandjelovic and Zisserman 2012): L1-normalise, square-root."""
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def extract(im: Image.Image, *, mirrored: bool = False) -> LocalFeatures:
    """SIFT on the image at working width, in vertical chunks so long pages stay bounded."""
    w, h = im.size
    src = ImageOps.mirror(im) if mirrored else im
    f = min(MAX_UPSCALE, WORK_WIDTH / w)
    ww, hh = max(1, round(w * f)), max(1, round(h * f))
    grey = np.asarray(src.convert("L").resize((ww, hh), Image.Resampling.BILINEAR))
    chunk, pad = 2 * WORK_WIDTH, 48
    xs, ds, rs = [], [], []
    det = _detector()
    for top in range(0, hh, chunk):
        lo, hi = max(0, top - pad), min(hh, top + chunk + pad)
        kps, desc = det.detectAndCompute(grey[lo:hi], None)
        if desc is None:
            continue
        pts = np.float32([k.pt for k in kps]).reshape(-1, 2)
        pts[:, 1] += lo
        keep = (pts[:, 1] >= top) & (pts[:, 1] < top + chunk)  # each point once across chunks
        xs.append(pts[keep])
        ds.append(desc[keep])
        rs.append(np.float32([k.response for k in kps])[keep])
    if not xs:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), np.zeros(0, np.float32), (w, h), mirrored)
    xy = np.concatenate(xs) / f
    if mirrored:
        xy[:, 0] = w - xy[:, 0]
    return LocalFeatures(xy.astype(np.float32), root_sift(np.concatenate(ds)), np.concatenate(rs), (w, h), mirrored)


class VoteIndex:
    """Strongest gallery descriptors in one FAISS index; a query's descriptors vote for images.

    A gallery image gets one vote from each query descriptor that has one of its descriptors
    among its k nearest neighbours, similar enough (``VOTE_SIMILARITY``) and clearly closer than
    the k-th neighbour (``VOTE_RATIO``); k - 1 images can share a point (colour variants of one
    shot). Votes survive crops, added banners, rotation and mirroring (the query is described
    both ways), where a whole-tile embedding does not.
    """

    def __init__(self, desc: np.ndarray, owners: np.ndarray) -> None:
        import faiss

        self.owners = owners.astype(np.int64)
        self.size = len(owners)
        d = 128
        if self.size > 200_000:
            nlist = int(4 * np.sqrt(self.size))
            quantizer = faiss.IndexFlatIP(d)
            self._index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            self._index.train(desc[rng.choice(self.size, min(self.size, 50 * nlist), replace=False)])
            self._index.nprobe = 16
        else:
            self._index = faiss.IndexFlatIP(d)
        if self.size:
            self._index.add(np.ascontiguousarray(desc, dtype=np.float32))

    @classmethod
    def build(cls, features: dict[int, LocalFeatures]) -> "VoteIndex":
        descs, owners = [], []
        for gid, feats in features.items():
            idx = feats.strongest(VOTE_PER_BLOCK)
            descs.append(feats.desc[idx])
            owners.append(np.full(len(idx), gid, np.int64))
        if not descs:
            return cls(np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
        return cls(np.concatenate(descs), np.concatenate(owners))

    def votes(self, query: LocalFeatures, k: int = 5) -> dict[int, int]:
        """Votes per gallery image id for the query's strongest descriptors."""
        if self.size == 0 or len(query) == 0:
            return {}
        q = query.desc[query.strongest(VOTE_PER_BLOCK)]
        sims, rows = self._index.search(np.ascontiguousarray(q), min(k, self.size))
        dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims))
        counts: dict[int, int] = {}
        for srow, drow, rrow in zip(sims, dist, rows):
            far = drow[-1] if len(drow) >= k else np.inf
            seen = {int(self.owners[r]) for s, d, r in zip(srow, drow, rrow) if r >= 0 and s >= VOTE_SIMILARITY and d < VOTE_RATIO * far}
            for gid in seen:
                counts[gid] = counts.get(gid, 0) + 1
        return counts


#: Bump when extraction changes: it keys the on-disk feature cache.
FEATURES_VERSION = "rootsift-v1"


def feature_path(home, sha256: str):
    from pathlib import Path

    return Path(home) / "features" / FEATURES_VERSION / sha256[:2] / f"{sha256}.npz"


def cached_extract(home, sha256: str, load_image) -> LocalFeatures:
    """Features of a stored image (upright), computed once and kept under the data folder."""
    path = feature_path(home, sha256)
    if path.exists():
        with np.load(path) as z:
            return LocalFeatures(z["xy"], z["desc"].astype(np.float32), z["response"], tuple(int(v) for v in z["size"]))
    feats = extract(load_image())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, xy=feats.xy, desc=feats.desc.astype(np.float16), response=feats.response, size=np.array(feats.size))
    tmp.replace(path)
    return feats
