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


_sift = None


def _detector():
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=1500)
    return _sift


def _prepare(im: Image.Image, region: Box, max_w: int, max_h: int, mirror: bool) -> tuple[np.ndarray, float]:
    crop = im.crop(region)
    if mirror:
        crop = ImageOps.mirror(crop)
    w, h = crop.size
    f = min(1.0, max_w / w, max_h / h)
    if f < 1.0:
        crop = crop.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
    return np.asarray(crop.convert("L")), f


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
    """Match SIFT keypoints between the two regions and fit a similarity transform with RANSAC.

    With ``mirrored`` the query region is flipped left-right first (a mirrored copy). The
    returned boxes are the bounding boxes of the RANSAC inliers, mapped back to each original.
    """
    qr = query_region or (0, 0, *query.size)
    gr = gallery_region or (0, 0, *gallery.size)
    qa, qf = _prepare(query, qr, max_w, max_h, mirrored)
    ga, gf = _prepare(gallery, gr, max_w, max_h, False)
    sift = _detector()
    kq, dq = sift.detectAndCompute(qa, None)
    kg, dg = sift.detectAndCompute(ga, None)
    empty = Verification(0, 0, None, None, 0.0, mirrored)
    if dq is None or dg is None or len(kq) < 3 or len(kg) < 3:
        return empty
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dq, dg, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 4:
        return Verification(0, len(good), None, None, 0.0, mirrored)
    pq = np.float32([kq[m.queryIdx].pt for m in good])
    pg = np.float32([kg[m.trainIdx].pt for m in good])
    model, mask = cv2.estimateAffinePartial2D(pq, pg, method=cv2.RANSAC, ransacReprojThreshold=6.0, maxIters=2000, confidence=0.995)
    if model is None or mask is None:
        return Verification(0, len(good), None, None, 0.0, mirrored)
    inl = mask.ravel().astype(bool)
    n_in = int(inl.sum())
    if n_in < 3:
        return Verification(n_in, len(good), None, None, 0.0, mirrored)
    scale = float(np.hypot(model[0, 0], model[1, 0])) * qf / gf
    q_pts = pq[inl] / qf
    if mirrored:
        q_pts[:, 0] = (qr[2] - qr[0]) - q_pts[:, 0]
    q_pts += np.float32([qr[0], qr[1]])
    g_pts = pg[inl] / gf + np.float32([gr[0], gr[1]])
    qbox = _bbox(q_pts, query.size)
    gbox = _bbox(g_pts, gallery.size)
    area = gallery.size[0] * gallery.size[1]
    overlap = (gbox[2] - gbox[0]) * (gbox[3] - gbox[1]) / area if area else 0.0
    return Verification(n_in, len(good), qbox, gbox, float(overlap), mirrored, scale)


def _bbox(pts: np.ndarray, size: tuple[int, int]) -> Box:
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return (max(0, int(x0)), max(0, int(y0)), min(size[0], int(x1)), min(size[1], int(y1)))
