"""Geometric verification: SIFT keypoints + RANSAC similarity fit between two image regions."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.local import LocalFeatures, extract, is_page, root_sift

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
    #: Share of protected content pixels (textured, or not plain backdrop) that disagree anywhere
    #: the aligned images overlap.
    disagreement: float = 0.0
    #: The protected image is a photo (not a long detail page, which a copier extends with
    #: banners that then overlap other parts of the page).
    photo: bool = False
    #: Share of the edge pixels inside the aligned region (textured on either side) that
    #: disagree: a copy reproduces every glyph, while another page in the same template shows
    #: other numbers in the same size-chart frame.
    edge_disagreement: float = 0.0
    #: The region's overall tint points another way on each side (``TINT_CHROMA``,
    #: ``TINT_ANGLE``): another colour design, not a copy.
    tint_turned: bool = False

    @property
    def ok(self) -> bool:
        return not self.rejected


#: Lab chroma distance (OpenCV 8-bit Lab units) above which two aligned pixels differ in colour.
CHROMA_TOLERANCE = 18.0
#: Chroma distance of a recoloured patch, and how much more such a patch counts than scattered
#: colour mismatch (a recolour is deliberate: 1% of the region recoloured is nearly a variant,
#: 1.25% is one; no copy of the bench sets shows any such patch inside its matched region,
#: while a waistband orange in one variant and teal in the other covers 1.1% of the photo).
RECOLOUR_CHROMA, RECOLOUR_WEIGHT = 24.0, 12.0
#: A part that is neutral in the protected photo (chroma below ``NEUTRAL_TINT``: white, grey,
#: black) and tinted in the suspect image once the copier's global edit is undone (chroma above
#: ``TINTED``) is recoloured too: no brightness, contrast or saturation change, nor a cast up to
#: ``MAX_CAST``, tints a grey part. A pale lavender top against the white one of the same shot
#: differs by a chroma of 10, within every tolerance above. Inside the matched region of the
#: bench's copies such patches cover at most 0.1%; the bench's pale-top and lining variants
#: (unrelated queries u-photo-00155, u-photo-00081) 1.7-12.6% (2026-12-05).
NEUTRAL_TINT, TINTED = 4.0, 8.0
#: A recoloured part follows the protected photo's own outlines (a garment, a lining, a
#: waistband): at least this share of its outline lies on the protected photo's edges. A copier's
#: coloured shop name or badge pasted over the photo has an outline of its own (its glyphs over
#: a plain backdrop or garment), and is no evidence of another variant.
OUTLINE_ON_EDGES = 0.5
#: Mean (a, b) shift left after the cast up to which a region is the same colour; at twice it the
#: region counts as this share mismatched (enough to score 0).
SHIFT_FREE, COLOUR_MISMATCH_SHIFTED = 5.0, 0.2
#: Saturation change (scale of the Lab (a, b) plane) a copier's global edit may explain, and the
#: mean chroma from which a region is coloured enough for the fitted scale to mean anything.
SATURATION_RANGE, COLOURFUL_CHROMA = (0.5, 2.0), 15.0
#: A region whose mean colour (its tint: the mean of its (a, b) offsets from neutral) is at least
#: this strong on both sides, and whose two tints point more than this many degrees apart, is
#: another colour design (:attr:`Verification.tint_turned`: no copy), whatever its pixels'
#: agreement once corrected: no saturation change or slight cast turns a beige band into a
#: light-blue one. The copies of the bench sets tinted that much keep their tint within 12
#: degrees (cosine 0.977 or more, photos and pages); a size chart on a beige band in one page
#: and a light-blue band in another is 172 degrees apart.
TINT_CHROMA, TINT_ANGLE = 4.0, 45.0
#: Pixel checks run at most this wide (the aligned crops are shrunk to it).
PIXEL_CHECK_WIDTH = 320
#: Largest global colour cast (shift of the a, b plane) a copier's correction may explain.
MAX_CAST = 4.0
#: Lab distance (after global correction) above which aligned pixels disagree, and the Sobel
#: gradient above which a pixel counts as textured.
DISAGREE_TOLERANCE, TEXTURE_GRADIENT = 20.0, 12.0
#: 8-bit Lab lightness from which a flat, nearly neutral pixel (|a| + |b| below
#: ``NEUTRAL_CHROMA``) is backdrop, not content.
BACKDROP_LIGHTNESS, NEUTRAL_CHROMA = 232, 12.0
#: Allowed scale between a copy and its original (a copier resizes, rarely more than this).
SCALE_RANGE = (1 / 6, 6.0)
#: Smallest matched region, in gallery pixels, on its shorter side (one line of text is not a copy).
MIN_REGION_SIDE = 64
#: Smallest matched region by area: this share of the protected image, or this many pixels,
#: whichever is less. A face or a logo shared by two colour variants of one shot is not a copy
#: of the photo; a third of a detail page is.
MIN_REGION_SHARE, MIN_REGION_PIXELS = 0.08, 200 * 200
#: The same for a region two of a client's own pages share (their template): a brand header of
#: two short lines is template however small. Its inliers' hull is about 350 x 120 px at
#: half-scale SIFT (``pipeline.local.DESCRIBE_SCALE``), under ``MIN_REGION_PIXELS``: with that
#: bound 2 of the bench's 150 pages had their header recorded, with this one all 150.
TEMPLATE_MIN_PIXELS = 100 * 100
#: Shortest matched band of a protected detail page, as a share of the page's width (143 px of
#: an 860 px page). Two lines of text are set alike on many shops' pages: a stock sentence, a
#: size chart's title over its column names. On the bench sets such bands of unrelated pages
#: matched gallery pages at correlation 0.99 and more, 82-139 px tall, while every copied
#: part's matched region was at least 170 px tall (2026-12-05).
PAGE_MIN_BAND = 1 / 6
#: Regions are compared at most this wide (and tall), enlarged at most this much.
WORK_WIDTH, WORK_HEIGHT, MAX_UPSCALE = 640, 2400, 2.0
#: Height limit when whole detail pages are compared with each other (their template).
LONG_PAGE = 40_000


_sift = None


def _detector():
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=2000)
    return _sift


@dataclass(frozen=True)
class Pixels:
    """An image as the pixel checks see it: RGB at ``scale`` of the original (at most the
    working width, so a gallery can keep many in memory), and the original's size.

    Regions and results stay in original pixels; only the array is smaller.
    """

    rgb: np.ndarray  # (h, w, 3) uint8
    scale: float
    size: tuple[int, int]

    @classmethod
    def of(cls, im: "Image.Image | Pixels", max_w: int | None = WORK_WIDTH) -> "Pixels":
        if isinstance(im, Pixels):
            return im
        w, h = im.size
        s = min(1.0, max_w / w) if max_w else 1.0
        if s < 1.0:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        return cls(np.asarray(im.convert("RGB")), s, (w, h))

    @property
    def nbytes(self) -> int:
        return int(self.rgb.nbytes)


class PixelCache:
    """:class:`Pixels` of gallery images by id, decoded on first use; the least recently used
    are dropped beyond a memory budget (a 640 px wide detail page is about 10 MB)."""

    def __init__(self, load, budget_bytes: int = 1_500_000_000) -> None:
        from collections import OrderedDict

        self._load, self._budget = load, budget_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0

    def __call__(self, key) -> Pixels:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return self.put(key, Pixels.of(self._load(key)))

    def put(self, key, pix: Pixels) -> Pixels:
        """Keep pixels prepared elsewhere (by the worker that decoded the image for indexing)."""
        if key in self._items:
            self._bytes -= self._items.pop(key).nbytes
        self._items[key] = pix
        self._bytes += pix.nbytes
        while self._bytes > self._budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return pix


def _factor(region: Box, max_w: int, max_h: int) -> float:
    """Scale at which a region is compared: to fit ``max_w`` x ``max_h``; small regions are
    enlarged (up to 2x) so that SIFT finds enough keypoints on them."""
    x0, y0, x1, y1 = region
    return min(MAX_UPSCALE, max_w / (x1 - x0), max_h / (y1 - y0))


def _prepare(pix: Pixels, region: Box, f: float, mirror: bool) -> np.ndarray:
    """The region as an RGB array at scale ``f`` of the original, mirrored if asked."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    s = pix.scale
    crop = pix.rgb[int(y0 * s): max(int(y0 * s) + 1, round(y1 * s)), int(x0 * s): max(int(x0 * s) + 1, round(x1 * s))]
    if mirror:
        crop = crop[:, ::-1]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if size != (crop.shape[1], crop.shape[0]):
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if f < s else cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop)


def aligned_agreement(query_rgb: np.ndarray, gallery_rgb: np.ndarray, model: np.ndarray, hull: np.ndarray,
                      template: np.ndarray | None = None, photo: bool | None = None) -> tuple[float, float, float, float, bool]:
    """Dense check of a fitted pair: warp the query crop onto the gallery crop with ``model`` and
    compare pixels.

    Inside ``hull`` (the inliers' convex hull, gallery crop coordinates) it measures:
    - the normalised cross-correlation of the blurred lightness: a copy agrees everywhere, while
      unrelated text that shares a few glyphs, or a black variant of a grey shot, does not;
    - the share of pixels whose Lab colour differs by more than ``CHROMA_TOLERANCE`` after the
      best global correction a copier could have applied (brightness and contrast: affine in L;
      saturation: one scale of the (a, b) plane). A copier's global change leaves little residue;
      a colour variant (a grey garment that is black or green in the other shot, the background
      unchanged) cannot be explained by one global map. Hue rotations are not allowed: a product
      on a neutral background with its hue rotated is indistinguishable from another variant.

    Over the whole area where the two crops overlap once aligned, it also measures the share of
    content pixels (textured, or not plain light backdrop of the gallery image, or coloured on the
    query's side) that disagree: a copy reproduces what it overlaps (a crop of a photo agrees
    wherever it lies), while two shots of one model in different clothes agree only at the face.
    Inside the hull again, the share of edge pixels (textured on either side) that disagree: a
    copy reproduces every glyph, while a size chart with other numbers in the same frame does
    not (its correlation stays high: most of its pixels are frame and background). Where the
    protected page's own template is known (``template``: a mask of the gallery crop, true on
    the client's template), only the edges outside it count when there are enough of them: the
    template agrees with any page of the client's design, so it is no evidence of a copy, and a
    part of another page whose size chart (other numbers) sits above the shared notice matched
    mostly on the notice (edge disagreement 0.038, level with the copies' most).
    Whether the region's overall tint turned (:func:`_tints_differ`) is reported apart.
    Returns (correlation, colour mismatch, overlap disagreement, edge disagreement, tint turned).
    The score reads the overlap disagreement of protected photos only and the edge disagreement
    of detail pages only: with ``photo`` given, the other one is not measured (returned as 0).
    """
    # Work only inside the bounding box of the query's footprint on the gallery crop (a band of a
    # long page must not cost a warp of the whole page).
    qh, qw = query_rgb.shape[:2]
    corners = np.float32([[0, 0], [qw, 0], [0, qh], [qw, qh]]) @ model[:, :2].T + model[:, 2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())), gallery_rgb.shape[1])
    y1 = min(int(np.ceil(corners[:, 1].max())), gallery_rgb.shape[0])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0, 0.0, 0.0, 0.0, False
    gallery_rgb = gallery_rgb[y0:y1, x0:x1]
    if template is not None:
        template = template[y0:y1, x0:x1].astype(np.uint8)
    hull = hull - np.float32([x0, y0])
    model = model.copy()
    model[:, 2] -= (x0, y0)
    h, w = gallery_rgb.shape[:2]
    warped = cv2.warpAffine(query_rgb, model, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.full(query_rgb.shape[:2], 255, np.uint8), model, (w, h), flags=cv2.INTER_NEAREST)
    # The statistics below need no more than PIXEL_CHECK_WIDTH pixels across (colours are blurred
    # anyway); a 640 px wide crop is halved, which makes the check four times cheaper.
    r = min(1.0, PIXEL_CHECK_WIDTH / w)
    if r < 1.0:
        size = (max(8, round(w * r)), max(8, round(h * r)))
        warped = cv2.resize(warped, size, interpolation=cv2.INTER_AREA)
        gallery_rgb = cv2.resize(gallery_rgb, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(valid, size, interpolation=cv2.INTER_NEAREST)
        if template is not None:
            template = cv2.resize(template, size, interpolation=cv2.INTER_NEAREST)
        hull = hull * np.float32([size[0] / w, size[1] / h])
        w, h = size
    valid = cv2.erode(valid, np.ones((_odd(5 * r), _odd(5 * r)), np.uint8)) > 0
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(hull.astype(np.int32)), 255)
    inside = (mask > 0) & valid
    if inside.sum() < 100 * r * r:
        return 0.0, 0.0, 0.0, 0.0, False
    # Smoothed colours, so JPEG noise and sub-pixel misalignment do not count.
    lab_q = cv2.cvtColor(cv2.GaussianBlur(warped, (0, 0), 2.0 * r), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_g = cv2.cvtColor(cv2.GaussianBlur(gallery_rgb, (0, 0), 2.0 * r), cv2.COLOR_RGB2LAB).astype(np.float32)
    lq, lg = lab_q[..., 0], lab_g[..., 0]
    qab, gab = lab_q[..., 1:] - 128.0, lab_g[..., 1:] - 128.0
    la, lb = lq[inside], lg[inside]
    la, lb = la - la.mean(), lb - lb.mean()
    denom = float(np.sqrt((la * la).sum() * (lb * lb).sum()))
    ncc = float((la * lb).sum() / denom) if denom > 1e-6 else 0.0
    # Undo what a copier may do to the whole image: brightness and contrast (affine in L, with
    # what the copy clipped to white or black left out of the fit) and
    # saturation (one scale of the (a, b) plane about neutral grey, plus a slight colour cast).
    # The scale is about neutral, not about each side's mean colour: a mean shift would absorb a
    # garment that is blue in one shot and grey in the other. What is left is local change.
    slope, offset = _lightness_map(lg[inside], lq[inside])
    x, y = qab[inside], gab[inside]
    var = float((x * x).sum())
    fitted = (x * y).sum() / var if var > 1e-6 else 1.0
    sat = float(np.clip(fitted, *SATURATION_RANGE))
    # Beyond that range on a clearly coloured region it is another colour, not an edit: a blue
    # ball in one shot and a blue-grey one in the other (saturation 0.29) stay within the colour
    # tolerance once scaled by 0.5, yet no copy in the bench sets needed less than 0.71 or more
    # than 1.68. (On near-neutral regions the fitted scale is noise: 0.44 on a copy.)
    recoloured = (not SATURATION_RANGE[0] <= fitted <= SATURATION_RANGE[1]
                  and max(np.hypot(*x.T).mean(), np.hypot(*y.T).mean()) >= COLOURFUL_CHROMA)
    cast = np.clip((y - sat * x).mean(axis=0), -MAX_CAST, MAX_CAST)
    # What is left after that correction, per pixel (squared Lab distance), computed once over
    # the whole footprint and read inside the hull and over the content.
    copy_ab = sat * qab + cast
    dab = copy_ab - gab
    dab2 = _norm2(dab)
    dl = np.clip(slope * lg + offset, 0.0, 255.0) - lq
    residual2 = dl * dl + dab2
    mismatch = float((residual2[inside] > CHROMA_TOLERANCE ** 2).mean())
    # A shift of the whole region's colour beyond the allowed cast (a sentence set in the same
    # font on a pink band in one page and a blue band in the other) is another design, not a copy,
    # even where each pixel stays within the tolerance.
    shift = float(np.hypot(*(sat * x + cast - y).mean(axis=0)))
    mismatch = max(mismatch, COLOUR_MISMATCH_SHIFTED * float(np.clip((shift - SHIFT_FREE) / SHIFT_FREE, 0.0, 1.0)))
    textured = _gradient(lg) > TEXTURE_GRADIENT
    # A recoloured part (a waistband that is blue in one variant and yellow in the other, a top
    # that is lavender where the protected shot's is white) is a solid patch in another colour
    # whose outline is the protected photo's own.
    coloured = (RECOLOUR_CHROMA / 2) ** 2
    g_chroma2 = _norm2(gab)
    patch = (((_norm2(qab) > coloured) & (g_chroma2 > coloured) & (dab2 > RECOLOUR_CHROMA ** 2))
             | ((g_chroma2 < NEUTRAL_TINT ** 2) & (_norm2(copy_ab) > TINTED ** 2))) & valid
    recolour = _recoloured(patch, inside, valid, textured, r)
    mismatch = 1.0 if recoloured else min(1.0, max(mismatch, RECOLOUR_WEIGHT * recolour / float(inside.sum())))
    edge_disagreement = 0.0 if photo else _edge_disagreement(residual2, inside, textured, lq, template, r)
    # Content is what is textured or not the plain light backdrop of a product shot: a garment
    # that is flat black in one shot and flat grey in the other counts, a white studio wall not.
    # Where the protected photo shows backdrop, coloured pixels on the other side are content
    # too (a white top that is lavender in the other shot), once the copier's global colour
    # edit is undone; neutral ones are not (the grey or black corners a rotated copy is padded
    # with, a watermark's white text).
    disagreement = 0.0
    if photo is not False:
        backdrop = (lg >= BACKDROP_LIGHTNESS) & _neutral(gab) & _neutral(copy_ab)
        over = valid & (textured | ~backdrop)
        disagreement = float((residual2[over] > DISAGREE_TOLERANCE ** 2).mean()) if over.sum() >= 100 * r * r else 0.0
    # Nor is a region whose overall tint turned (a beige band that is light blue in the other
    # page). Reported apart from the colour mismatch: the same words in another tint still show
    # where a template's boilerplate sits.
    tint_turned = _tints_differ(x.mean(axis=0), y.mean(axis=0))
    return ncc, mismatch, disagreement, edge_disagreement, tint_turned


def _edge_disagreement(residual2: np.ndarray, inside: np.ndarray, textured: np.ndarray, lq: np.ndarray,
                       template: np.ndarray | None, r: float) -> float:
    """Share of the edge pixels inside the hull (textured on either side; outside the client's
    template where enough are left) whose residual exceeds ``DISAGREE_TOLERANCE``."""
    edges = inside & (textured | (_gradient(lq) > TEXTURE_GRADIENT))
    enough_edges = 50 * r * r
    if template is not None:
        own = edges & (template == 0)
        if own.sum() >= enough_edges:
            edges = own
    return float((residual2[edges] > DISAGREE_TOLERANCE ** 2).mean()) if edges.sum() >= enough_edges else 0.0


def _recoloured(patch: np.ndarray, inside: np.ndarray, valid: np.ndarray, edges: np.ndarray, r: float) -> int:
    """Pixels inside the hull of the solid ``patch`` parts whose outline follows ``edges`` (the
    protected photo's): a recoloured part, not an overlay a copier pasted on.

    Scattered JPEG or watermark residue is removed by a morphological opening. Each remaining
    part counts when at least ``OUTLINE_ON_EDGES`` of its outline (where it does not run along
    the border of the aligned footprint) lies within about two working pixels of an edge.
    """
    k = _odd(9 * r)
    patch = cv2.morphologyEx(patch.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    if not patch[inside].any():
        return 0
    n, labels = cv2.connectedComponents(patch, connectivity=8)
    square = np.ones((3, 3), np.uint8)
    outline = (patch > 0) & (cv2.erode(patch, square) == 0) & (cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    near_edge = cv2.dilate(edges.astype(np.uint8), np.ones((_odd(5 * r),) * 2, np.uint8)) > 0
    length = np.bincount(labels[outline], minlength=n)
    on_edges = np.bincount(labels[outline & near_edge], minlength=n)
    within = np.bincount(labels[inside], minlength=n)
    follows = on_edges >= OUTLINE_ON_EDGES * np.maximum(length, 1)
    follows[0] = False
    return int(within[follows].sum())


def _tints_differ(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two mean (a, b) offsets are both tinted (``TINT_CHROMA``) and point more than
    ``TINT_ANGLE`` degrees apart."""
    na, nb = float(np.hypot(*a)), float(np.hypot(*b))
    return min(na, nb) >= TINT_CHROMA and float(np.dot(a, b)) < np.cos(np.radians(TINT_ANGLE)) * na * nb


def _gradient(lightness: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude (L1) of a lightness array."""
    return np.abs(cv2.Sobel(lightness, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(lightness, cv2.CV_32F, 0, 1))


def _norm2(ab: np.ndarray) -> np.ndarray:
    """Squared length of each (a, b) pair of an (..., 2) array (numpy reduces a 2-long last
    axis slowly; this is several times faster than ``(ab * ab).sum(axis=-1)``)."""
    a, b = ab[..., 0], ab[..., 1]
    return a * a + b * b


def _neutral(ab: np.ndarray) -> np.ndarray:
    """Nearly grey pixels of an (..., 2) array of Lab (a, b) offsets from neutral."""
    return np.abs(ab[..., 0]) + np.abs(ab[..., 1]) < NEUTRAL_CHROMA


def _odd(x: float) -> int:
    """The odd kernel size nearest to ``x``, at least 3."""
    return max(3, int(round(x)) | 1)


def _lightness_map(g: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """Least-squares ``q ~ clip(slope * g + offset, 0, 255)`` over the pixels the copy did not clip.

    This is the map from the protected image's lightness to the copy's: a copier's brightness or
    contrast change is affine, and brightening clips highlights to white (darkening clips shadows
    to black), so pixels the copy shows saturated do not constrain the fit. A colour variant needs
    more than this (a garment dark grey in one shot and black in the other, the skin unchanged).
    """
    free = (q > 2.0) & (q < 253.0)
    if free.sum() < 50:
        free = np.ones_like(q, bool)
    x, y = g[free], q[free]
    xc = x - x.mean()
    var = float((xc * xc).sum())
    slope = float(np.clip((xc * (y - y.mean())).sum() / var, 0.5, 2.0)) if var > 1e-6 else 1.0
    return slope, float(y.mean() - slope * x.mean())


@dataclass
class _Side:
    """One side of a pair: its keypoints (in crop pixels) and descriptors, where the crop sits in
    the original, and the prepared crop itself (:attr:`rgb`, made on first use: most checks
    end at the RANSAC fit, before any pixel is compared)."""

    factor: float
    region: Box
    size: tuple[int, int]
    mirrored: bool
    pts: np.ndarray  # (n, 2) float32, crop coordinates
    desc: np.ndarray  # (n, 128) float32 RootSIFT
    pixels: Pixels | None = None
    _rgb: np.ndarray | None = None

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = _prepare(self.pixels, self.region, self.factor, self.mirrored)
        return self._rgb

    @classmethod
    def detect(cls, im: Image.Image, region: Box | None, mirrored: bool, max_w: int, max_h: int, detector) -> "_Side":
        """Keypoints found on the prepared crop itself."""
        region = region or (0, 0, *im.size)
        f = _factor(region, max_w, max_h)
        rgb = _prepare(Pixels.of(im, None), region, f, mirrored)
        kp, desc = detector.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
        pts = np.float32([k.pt for k in kp]).reshape(-1, 2)
        desc = root_sift(desc) if desc is not None else np.zeros((0, 128), np.float32)
        return cls(f, region, im.size, mirrored, pts, desc, _rgb=rgb)

    @classmethod
    def with_features(cls, im: "Image.Image | Pixels", region: Box | None, features: LocalFeatures, max_w: int, max_h: int) -> "_Side":
        """Keypoints taken from features computed once for the whole image."""
        pix = Pixels.of(im)
        region = region or (0, 0, *pix.size)
        sel = features.inside(region)
        side = cls(_factor(region, max_w, max_h), region, pix.size, features.mirrored, np.zeros((0, 2), np.float32),
                   features.desc[sel], pix)
        side.pts = side.to_crop(features.xy[sel])
        return side

    def template_mask(self, boxes: Sequence[Box]) -> np.ndarray | None:
        """A mask of the prepared crop, true inside ``boxes`` (original pixels); None without any."""
        if not boxes:
            return None
        h, w = self.rgb.shape[:2]
        mask = np.zeros((h, w), bool)
        for box in boxes:
            (cx0, cy0), (cx1, cy1) = self.to_crop(np.float32([box[:2], box[2:]]).reshape(2, 2))
            cx0, cx1 = sorted((cx0, cx1))  # a mirrored side flips x
            mask[max(0, int(cy0)): max(0, int(np.ceil(cy1))), max(0, int(cx0)): max(0, int(np.ceil(cx1)))] = True
        return mask

    def to_original(self, pts: np.ndarray) -> np.ndarray:
        out = pts / self.factor
        if self.mirrored:
            out[:, 0] = (self.region[2] - self.region[0]) - out[:, 0]
        return out + np.float32([self.region[0], self.region[1]])

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        out = xy - np.float32([self.region[0], self.region[1]])
        if self.mirrored:
            out[:, 0] = (self.region[2] - self.region[0]) - out[:, 0]
        return (out * self.factor).astype(np.float32)


def _ratio_matches(qdesc: np.ndarray, gdesc: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowe's ratio test: (query index, gallery index, distance) of each query descriptor whose
    nearest gallery descriptor is clearly nearer than the second.

    Exhaustive, as one matrix product per block of query rows that yields squared distances
    directly: each side carries its squared norm and a 1 as two extra columns, so that
    [q, |q|^2, 1] . [-2g, 1, |g|^2] = |q - g|^2 (no pass over the block to add the norms). On a
    check's typical 1,500 x 800 descriptors about 3x faster than OpenCV's brute-force matcher,
    with the same neighbours.
    """
    if len(qdesc) < 3 or len(gdesc) < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    q = _with_norm_columns(qdesc, 1.0, first=True)
    g = _with_norm_columns(gdesc, -2.0, first=False)
    step = max(1, _MATCH_BLOCK // len(g))
    out_q, out_t, out_d = [], [], []
    for lo in range(0, len(q), step):
        d2 = q[lo:lo + step] @ g.T
        rows = np.arange(len(d2))
        first = d2.argmin(axis=1)
        best = d2[rows, first].copy()
        d2[rows, first] = np.inf
        second = d2.min(axis=1)
        best, second = np.sqrt(np.maximum(best, 0.0)), np.sqrt(np.maximum(second, 0.0))
        keep = np.flatnonzero(best < ratio * second)
        out_q.append(keep + lo)
        out_t.append(first[keep])
        out_d.append(best[keep])
    return np.concatenate(out_q).astype(np.int64), np.concatenate(out_t).astype(np.int64), np.concatenate(out_d).astype(np.float32)


def _with_norm_columns(desc: np.ndarray, scale: float, *, first: bool) -> np.ndarray:
    """``scale * desc`` with two more columns: (|desc|^2, 1) when ``first``, else (1, |desc|^2)."""
    d = np.asarray(desc, dtype=np.float32)
    out = np.empty((len(d), d.shape[1] + 2), np.float32)
    np.multiply(d, scale, out=out[:, :-2])
    norms = np.einsum("ij,ij->i", d, d)
    out[:, -2], out[:, -1] = (norms, 1.0) if first else (1.0, norms)
    return out


#: Distance-matrix entries computed at once by :func:`_ratio_matches` (16 MB of float32).
_MATCH_BLOCK = 4_000_000


def _one_to_one(qi: np.ndarray, ti: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep, for each gallery point, only its nearest query point: many query points on one
    gallery point would let RANSAC fit a degenerate transform that collapses them all."""
    order = np.argsort(dist, kind="stable")
    _, first = np.unique(ti[order], return_index=True)
    keep = order[first]
    return qi[keep], ti[keep]


def _good_matches(q: _Side, g: _Side, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    qi, ti = _one_to_one(*_ratio_matches(q.desc, g.desc, ratio))
    return q.pts[qi].reshape(-1, 2), g.pts[ti].reshape(-1, 2)


def _fit(q: _Side, g: _Side, pq: np.ndarray, pg: np.ndarray, min_inliers: int = 0,
         template: Sequence[Box] = (), min_pixels: int = MIN_REGION_PIXELS,
         min_band: float = PAGE_MIN_BAND) -> tuple[Verification, np.ndarray]:
    """One RANSAC similarity fit on the matches; returns the verification and its inlier mask.

    The aligned pixels are compared (:func:`aligned_agreement`, most of a check's cost) only for
    a fit that can still be a copy: at least ``min_inliers`` inliers, a plausible scale and a
    region big enough (``MIN_REGION_SIDE``; ``MIN_REGION_SHARE`` of the protected image or
    ``min_pixels``; on a detail page, ``min_band`` of its width tall); any other fit is returned
    rejected, with correlation 0.
    """
    none = np.zeros(len(pq), bool)
    if len(pq) < 4:
        return Verification(0, len(pq), None, None, 0.0, q.mirrored), none
    model, mask = cv2.estimateAffinePartial2D(pq, pg, method=cv2.RANSAC, ransacReprojThreshold=6.0, maxIters=4000, confidence=0.998)
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
    qbox = _bbox(q.to_original(pq[inl]), q.size)
    gbox = _bbox(g.to_original(pg[inl]), g.size)
    area = g.size[0] * g.size[1]
    overlap = (gbox[2] - gbox[0]) * (gbox[3] - gbox[1]) / area if area else 0.0
    side = min(gbox[2] - gbox[0], gbox[3] - gbox[1])
    region_area = (gbox[2] - gbox[0]) * (gbox[3] - gbox[1])
    photo = not is_page(g.size)
    rejected = ""
    if side < MIN_REGION_SIDE:
        rejected = f"matched region too thin ({side} px)"
    elif not photo and gbox[3] - gbox[1] < min_band * g.size[0]:
        rejected = f"matched band too short ({gbox[3] - gbox[1]} px)"
    elif region_area < min(MIN_REGION_SHARE * area, min_pixels):
        rejected = f"matched region too small ({overlap:.1%} of the protected image)"
    elif n_in < min_inliers:
        rejected = f"too few inliers ({n_in} < {min_inliers})"
    if rejected:
        return Verification(n_in, len(pq), qbox, gbox, float(overlap), q.mirrored, q_scale, 0.0, rejected, 0.0, 0.0, photo), inl
    correlation, mismatch, disagreement, edges, tint_turned = aligned_agreement(q.rgb, g.rgb, model, pg[inl],
                                                                                g.template_mask(template), photo)
    return Verification(n_in, len(pq), qbox, gbox, float(overlap), q.mirrored, q_scale, mismatch, rejected, correlation,
                        disagreement, photo, edges, tint_turned), inl


def verify_pair(
    query: Image.Image,
    gallery: Image.Image,
    *,
    query_region: Box | None = None,
    gallery_region: Box | None = None,
    mirrored: bool = False,
    max_w: int = WORK_WIDTH,
    max_h: int = WORK_HEIGHT,
    ratio: float = 0.8,
) -> Verification:
    """Match SIFT keypoints between the two regions, fit a similarity transform with RANSAC and
    compare the aligned pixels (:func:`aligned_agreement`).

    With ``mirrored`` the query region is flipped left-right first (a mirrored copy). The
    returned boxes are the bounding boxes of the RANSAC inliers, mapped back to each original.
    """
    det = _detector()
    q = _Side.detect(query, query_region, mirrored, max_w, max_h, det)
    g = _Side.detect(gallery, gallery_region, False, max_w, max_h, det)
    v, _ = _fit(q, g, *_good_matches(q, g, ratio))
    return v


def verify_features(
    query: "Image.Image | Pixels",
    query_features: LocalFeatures,
    gallery: "Image.Image | Pixels",
    gallery_features: LocalFeatures,
    *,
    query_region: Box | None = None,
    gallery_region: Box | None = None,
    ratio: float = 0.8,
    min_inliers: int = 0,
    template: Sequence[Box] = (),
) -> Verification:
    """:func:`verify_pair` with keypoints computed once per image (see ``pipeline.local``);
    the query features' orientation says whether the copy is mirrored. A fit with fewer than
    ``min_inliers`` inliers is rejected without comparing pixels. ``template``: the protected
    page's template regions (the client's design shared by its pages), which do not count as
    evidence in the edge check (:func:`aligned_agreement`)."""
    q = _Side.with_features(query, query_region, query_features, WORK_WIDTH, WORK_HEIGHT)
    g = _Side.with_features(gallery, gallery_region, gallery_features, WORK_WIDTH, WORK_HEIGHT)
    v, _ = _fit(q, g, *_good_matches(q, g, ratio), min_inliers=min_inliers, template=template)
    return v


def shared_regions(
    a: Image.Image,
    b: Image.Image,
    *,
    features: tuple[LocalFeatures, LocalFeatures] | None = None,
    matches: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    band: int = 480,
    min_inliers: int = 12,
    ratio: float = 0.8,
) -> list[Verification]:
    """Regions of ``a`` that also appear in ``b``: each horizontal band of ``a`` (overlapping by
    half) is verified against the whole of ``b``.

    Used on a client's own detail pages to find their common template (brand header, shipping
    and return notices), which must not make findings. Bands keep the header and the notice
    apart: they sit at different offsets on pages of different lengths.

    ``matches`` (indices into ``a``'s and ``b``'s features, and distances) replaces the ratio-test
    matching of all of ``a``'s descriptors against ``b``'s.
    """
    fa, fb = features or (extract(a), extract(b))
    g = _Side.with_features(b, None, fb, WORK_WIDTH, LONG_PAGE)
    g.pts = g.to_crop(fb.xy)  # indexed like fb, whatever lies on the border
    a = Pixels.of(a)
    width, height = a.size
    # A band's descriptors have the same nearest neighbours in b as the whole page's: match once.
    qi, ti, dist = matches if matches is not None else _ratio_matches(fa.desc, fb.desc, ratio)
    found: list[Verification] = []
    for top in range(0, max(1, height - band // 2), band // 2):
        region = (0, top, width, min(height, top + band))
        in_band = fa.inside(region)[qi] if len(qi) else np.zeros(0, bool)
        if in_band.sum() < min_inliers:
            continue
        q = _Side.with_features(a, region, fa, WORK_WIDTH, LONG_PAGE)
        bq, bt = _one_to_one(qi[in_band], ti[in_band], dist[in_band])
        v, _ = _fit(q, g, q.to_crop(fa.xy[bq]), g.pts[bt].reshape(-1, 2), min_inliers=min_inliers,
                    min_pixels=TEMPLATE_MIN_PIXELS, min_band=0.0)
        if v.ok and v.inliers >= min_inliers:
            found.append(v)
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
