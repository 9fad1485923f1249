"""Geometric verification: SIFT keypoints + RANSAC similarity fit between two image regions."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Verification:
    """Outcome of one pairwise check; boxes are in each original image's pixel coordinates."""

    inliers: int
    matches: int
    query_box: Box | None
    gallery_box: Box | None
    #: Share of the protected image's area inside ``gallery_box``.
    overlap: float
    mirrored: bool
    #: Scale of the fitted transform (query pixels per gallery pixel).
    scale: float = 0.0
    #: Share of the aligned region whose colour differs (Lab chroma distance above
    #: ``CHROMA_TOLERANCE``): near 0 for copies, large for colour variants of one shot.
    colour_mismatch: float = 0.0
    #: Why the pair was rejected before counting inliers ("" when it was not).
    rejected: str = ""
    #: Normalised cross-correlation of the aligned regions (1 for an exact copy).
    correlation: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected


#: Lab chroma distance (OpenCV 8-bit Lab units) above which two aligned pixels differ in colour.
CHROMA_TOLERANCE = 18.0
#: Allowed scale between a copy and its original (a copier resizes, rarely more than this).
SCALE_RANGE = (1 / 6, 6.0)
#: Smallest matched region, in gallery pixels, on its shorter side (one line of text is not a copy).
MIN_REGION_SIDE = 64
#: Smallest matched region by area: this share of the protected image, or this many pixels,
#: whichever is less. A face or a logo shared by two colour variants of one shot is not a copy
#: of the photo; a third of a detail page is.
MIN_REGION_SHARE, MIN_REGION_PIXELS = 0.15, 300 * 300


_sift = None


def _detector():
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=1500)
    return _sift


def _prepare(im: Image.Image, region: Box, max_w: int, max_h: int, mirror: bool) -> tuple[np.ndarray, float]:
    """The region as an RGB array, mirrored if asked, scaled to fit; and the scale factor."""
    crop = im.crop(region)
    if mirror:
        crop = ImageOps.mirror(crop)
    w, h = crop.size
    f = min(1.0, max_w / w, max_h / h)
    if f < 1.0:
        crop = crop.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
    return np.asarray(crop.convert("RGB")), f


def aligned_agreement(query_rgb: np.ndarray, gallery_rgb: np.ndarray, model: np.ndarray, hull: np.ndarray) -> tuple[float, float]:
    """Dense check of a fitted pair: warp the query crop onto the gallery crop with ``model`` and
    compare the pixels inside ``hull`` (the inliers' convex hull, gallery crop coordinates).

    Returns (correlation, colour mismatch):
    - the normalised cross-correlation of the blurred lightness: a copy agrees everywhere, while
      unrelated text that shares a few glyphs, or a black variant of a grey shot, does not;
    - the share of pixels whose chroma differs by more than ``CHROMA_TOLERANCE`` after the best
      saturation change (one scale plus an offset of the (a, b) chroma plane). A copier's
      brightness, contrast or saturation change leaves little residue; a colour variant (a red
      garment that is blue in the other shot) needs a hue rotation, which is not allowed: a hue
      rotation of a product on a neutral background is indistinguishable from another variant.
    """
    h, w = gallery_rgb.shape[:2]
    warped = cv2.warpAffine(query_rgb, model, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.full(query_rgb.shape[:2], 255, np.uint8), model, (w, h), flags=cv2.INTER_NEAREST)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(hull.astype(np.int32)), 255)
    inside = (mask & valid) > 0
    if inside.sum() < 100:
        return 0.0, 0.0
    # Smoothed colours, so JPEG noise and sub-pixel misalignment do not count.
    a = cv2.cvtColor(cv2.GaussianBlur(warped, (0, 0), 2.0), cv2.COLOR_RGB2LAB).astype(np.float32)[inside]
    b = cv2.cvtColor(cv2.GaussianBlur(gallery_rgb, (0, 0), 2.0), cv2.COLOR_RGB2LAB).astype(np.float32)[inside]
    la, lb = a[:, 0] - a[:, 0].mean(), b[:, 0] - b[:, 0].mean()
    denom = float(np.sqrt((la * la).sum() * (lb * lb).sum()))
    ncc = float((la * lb).sum() / denom) if denom > 1e-6 else 0.0
    x, y = a[:, 1:], b[:, 1:]
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    var = float((xc * xc).sum())
    sat = float(np.clip((xc * yc).sum() / var, 0.5, 2.0)) if var > 1e-6 else 1.0
    residual = np.linalg.norm(sat * xc - yc, axis=1)
    return ncc, float((residual > CHROMA_TOLERANCE).mean())


@dataclass
class _Side:
    """One side of a pair: the prepared crop, its keypoints and where it sits in the original."""

    rgb: np.ndarray
    factor: float
    region: Box
    size: tuple[int, int]
    mirrored: bool
    keypoints: tuple
    descriptors: np.ndarray | None

    @classmethod
    def of(cls, im: Image.Image, region: Box | None, mirrored: bool, max_w: int, max_h: int, detector) -> "_Side":
        region = region or (0, 0, *im.size)
        rgb, f = _prepare(im, region, max_w, max_h, mirrored)
        kp, desc = detector.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
        return cls(rgb, f, region, im.size, mirrored, kp, desc)

    def to_original(self, pts: np.ndarray) -> np.ndarray:
        out = pts / self.factor
        if self.mirrored:
            out[:, 0] = (self.region[2] - self.region[0]) - out[:, 0]
        return out + np.float32([self.region[0], self.region[1]])


def _good_matches(q: _Side, g: _Side, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    if q.descriptors is None or g.descriptors is None or len(q.keypoints) < 3 or len(g.keypoints) < 3:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(q.descriptors, g.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    pq = np.float32([q.keypoints[m.queryIdx].pt for m in good]).reshape(-1, 2)
    pg = np.float32([g.keypoints[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return pq, pg


def _fit(q: _Side, g: _Side, pq: np.ndarray, pg: np.ndarray) -> tuple[Verification, np.ndarray]:
    """One RANSAC similarity fit on the matches; returns the verification and its inlier mask."""
    none = np.zeros(len(pq), bool)
    if len(pq) < 4:
        return Verification(0, len(pq), None, None, 0.0, q.mirrored), none
    model, mask = cv2.estimateAffinePartial2D(pq, pg, method=cv2.RANSAC, ransacReprojThreshold=6.0, maxIters=2000, confidence=0.995)
    if model is None or mask is None:
        return Verification(0, len(pq), None, None, 0.0, q.mirrored), none
    inl = mask.ravel().astype(bool)
    n_in = int(inl.sum())
    if n_in < 3:
        return Verification(n_in, len(pq), None, None, 0.0, q.mirrored), inl
    g_per_q = float(np.hypot(model[0, 0], model[1, 0])) * q.factor / g.factor
    q_scale = 1.0 / g_per_q if g_per_q > 1e-9 else float("inf")
    if not SCALE_RANGE[0] <= q_scale <= SCALE_RANGE[1]:
        return Verification(0, len(pq), None, None, 0.0, q.mirrored, q_scale, rejected=f"implausible scale {q_scale:.3g}"), inl
    correlation, mismatch = aligned_agreement(q.rgb, g.rgb, model, pg[inl])
    qbox = _bbox(q.to_original(pq[inl]), q.size)
    gbox = _bbox(g.to_original(pg[inl]), g.size)
    area = g.size[0] * g.size[1]
    overlap = (gbox[2] - gbox[0]) * (gbox[3] - gbox[1]) / area if area else 0.0
    side = min(gbox[2] - gbox[0], gbox[3] - gbox[1])
    region_area = (gbox[2] - gbox[0]) * (gbox[3] - gbox[1])
    rejected = ""
    if side < MIN_REGION_SIDE:
        rejected = f"matched region too thin ({side} px)"
    elif region_area < min(MIN_REGION_SHARE * area, MIN_REGION_PIXELS):
        rejected = f"matched region too small ({overlap:.1%} of the protected image)"
    return Verification(n_in, len(pq), qbox, gbox, float(overlap), q.mirrored, q_scale, mismatch, rejected, correlation), inl


def verify_pair(
    query: Image.Image,
    gallery: Image.Image,
    *,
    query_region: Box | None = None,
    gallery_region: Box | None = None,
    mirrored: bool = False,
    max_w: int = 480,
    max_h: int = 2400,
    ratio: float = 0.8,
) -> Verification:
    """Match SIFT keypoints between the two regions, fit a similarity transform with RANSAC and
    compare the aligned pixels (:func:`aligned_agreement`).

    With ``mirrored`` the query region is flipped left-right first (a mirrored copy). The
    returned boxes are the bounding boxes of the RANSAC inliers, mapped back to each original.
    """
    det = _detector()
    q = _Side.of(query, query_region, mirrored, max_w, max_h, det)
    g = _Side.of(gallery, gallery_region, False, max_w, max_h, det)
    v, _ = _fit(q, g, *_good_matches(q, g, ratio))
    return v


def shared_regions(a: Image.Image, b: Image.Image, *, max_regions: int = 4, min_inliers: int = 12, ratio: float = 0.8) -> list[Verification]:
    """Every region the two images share, by sequential RANSAC: fit, remove the inliers, fit again.

    Used on a client's own detail pages to find their common template (brand header, shipping
    and return notices), which must not make findings.
    """
    det = cv2.SIFT_create(nfeatures=6000)
    q = _Side.of(a, None, False, 480, 2400, det)
    g = _Side.of(b, None, False, 480, 2400, det)
    pq, pg = _good_matches(q, g, ratio)
    found: list[Verification] = []
    for _ in range(max_regions):
        v, inl = _fit(q, g, pq, pg)
        if v.inliers < min_inliers or not inl.any():
            break
        if v.ok:
            found.append(v)
        pq, pg = pq[~inl], pg[~inl]
    return found


def covered_share(box: Box, others: list[Box]) -> float:
    """Share of ``box``'s area inside the union of ``others`` (on a coarse grid)."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0 or not others:
        return 0.0
    gx = np.linspace(x0, x1, 24, endpoint=False) + (x1 - x0) / 48
    gy = np.linspace(y0, y1, 24, endpoint=False) + (y1 - y0) / 48
    xx, yy = np.meshgrid(gx, gy)
    inside = np.zeros(xx.shape, bool)
    for ox0, oy0, ox1, oy1 in others:
        inside |= (xx >= ox0) & (xx < ox1) & (yy >= oy0) & (yy < oy1)
    return float(inside.mean())


def _bbox(pts: np.ndarray, size: tuple[int, int]) -> Box:
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return (max(0, int(x0)), max(0, int(y0)), min(size[0], int(x1)), min(size[1], int(y1)))
