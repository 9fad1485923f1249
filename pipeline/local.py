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
#: An image at most this many times as tall as wide is a photo, not a detail page.
PHOTO_RATIO = 1.5


def is_page(size: tuple[int, int]) -> bool:
    """Whether an image of this (width, height) is a long detail page rather than a photo."""
    w, h = size
    return h > PHOTO_RATIO * w


#: SIFT runs on a detail page's working image at this scale. OpenCV's SIFT doubles its input
#: before the first octave (no option turns that off), so at half scale its finest octave
#: samples the working width itself instead of twice it: a 640 x 1,280 px chunk of a page costs
#: a fifth (36 ms against 186 on the machine of 2026-12-05) and yields about 40% of the
#: keypoints, the finest-scale ones missing. A page has points to spare; a photo (one working
#: block or so, cheap either way) may not: a copy of a plain stability ball kept 4 inliers at half
#: scale, so photos are described at full scale. docs/MATCHING.md ("Speed: what it took") says
#: what it cost and gained.
DESCRIBE_SCALE = 0.5
#: SIFT's contrast threshold (OpenCV's default: 0.04). At half scale the default left a small,
#: low-contrast copied part 86 keypoints (673 at full scale) and type2 Rank-1 at 0.994; 0.03
#: gives such parts back enough points to verify (0.997) for about 6% more query time. Photos
#: use it too: with 0.04 on photos only, the type2 parts shaped like photos lost a Rank-1 (0.994).
SIFT_CONTRAST = 0.03
#: Keypoints kept per WORK_WIDTH x WORK_WIDTH block of the working image.
PER_BLOCK = 1500
#: Of those, the strongest this many per block go into the voting index.
VOTE_PER_BLOCK = 300
#: Height (in working pixels) of the bands that each keep their share of the voting keypoints
#: (:meth:`LocalFeatures.strongest_in_every_band`): one block. Quarter-block bands kept more of
#: a small plain photo's points but made type2 precision at 0.4 0.992 instead of 0.997 (two more
#: decoy size charts found, 2026-12-04).
VOTE_BAND = WORK_WIDTH
#: A query votes with more of its keypoints: a small copy framed by the copier's banners has
#: its strongest points on the banner text, not on the product.
QUERY_VOTES_PER_BLOCK = 900
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
        """Indices of the strongest keypoints, strongest first: ``per_block`` per working block
        of the image's area, ranked over the whole image."""
        w, h = self.size
        f = min(MAX_UPSCALE, WORK_WIDTH / w)
        blocks = max(1.0, (w * f) * (h * f) / (WORK_WIDTH * WORK_WIDTH))
        n = int(per_block * blocks)
        return np.argsort(-self.response)[:n]

    def strongest_in_every_band(self, per_block: int) -> np.ndarray:
        """:meth:`strongest`, plus the strongest of every band ``VOTE_BAND`` rows tall that has
        fewer among them than its area's share (``per_block`` per block; sorted indices).

        A long page's text responds far more strongly than a photo of plain fabric on it: ranked
        over the whole page, a sleeve's 55 keypoints kept 1 place among 2,716, and a copy of that
        photo had nothing to vote with. Keeping every band represented (about a quarter more
        points on the bench's detail pages, 3-7% more on photos) lets it vote; the text keeps all
        it had, for the client-template search, which runs on the same points.
        """
        overall = self.strongest(per_block)
        if len(overall) == len(self):
            return np.sort(overall)
        w, h = self.size
        f = min(MAX_UPSCALE, WORK_WIDTH / w)
        order = np.argsort(-self.response, kind="stable")
        last = int(h * f // VOTE_BAND)
        band = np.minimum((self.xy[order, 1] * f // VOTE_BAND).astype(np.int64), last)
        rows = np.clip(h * f - VOTE_BAND * np.arange(last + 1), 0, VOTE_BAND)
        quota = per_block * (w * f) * rows / (WORK_WIDTH * WORK_WIDTH)
        grouped = np.argsort(band, kind="stable")  # by band, strongest first within each
        starts = np.searchsorted(band[grouped], band[grouped])
        rank = np.empty(len(order), np.int64)
        rank[grouped] = np.arange(len(order)) - starts
        return np.union1d(overall, order[rank < quota[band]])

    def inside(self, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        return (self.xy[:, 0] >= x0) & (self.xy[:, 0] < x1) & (self.xy[:, 1] >= y0) & (self.xy[:, 1] < y1)


_sift = None


def _detector():
    global _sift
    if _sift is None:
        _sift = cv2.SIFT_create(nfeatures=PER_BLOCK * 2, contrastThreshold=SIFT_CONTRAST)
    return _sift


def root_sift(desc: np.ndarray) -> np.ndarray:
    """Hellinger-normalised SIFT (Arandjelovic and Zisserman 2012): L1-normalise, square-root."""
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def _mirror_permutation() -> np.ndarray:
    """Where each entry of a SIFT descriptor goes when the image is flipped left-right.

    OpenCV lays a descriptor out as 4 x 4 spatial cells (rows along the keypoint's normal, columns
    along its orientation) x 8 gradient-orientation bins relative to the keypoint's orientation.
    Flipping the image negates every angle: the keypoint's orientation and the gradients' both,
    so the relative bin o becomes (8 - o) mod 8, and the cell rows swap (r becomes 3 - r) while
    columns stay. The permutation is its own inverse.
    """
    perm = np.empty(128, np.int64)
    for r in range(4):
        for c in range(4):
            for o in range(8):
                perm[(r * 4 + c) * 8 + o] = ((3 - r) * 4 + c) * 8 + (8 - o) % 8
    return perm


MIRROR = _mirror_permutation()


def mirrored(features: LocalFeatures) -> LocalFeatures:
    """The features of the left-right flipped image, without running SIFT again.

    Keypoints keep their positions (in the original's coordinates); descriptors are permuted
    (:data:`MIRROR`). On real photos a permuted descriptor is as close to the one SIFT computes
    on the flipped image as two recompressions of one image are to each other (mean cosine 0.93).
    """
    return LocalFeatures(features.xy, features.desc[:, MIRROR], features.response, features.size, not features.mirrored)


def extract(im: Image.Image, *, mirrored: bool = False) -> LocalFeatures:
    """SIFT on the image at working width (a detail page described at ``DESCRIBE_SCALE`` of
    it), in vertical chunks of two working blocks so long pages stay bounded."""
    w, h = im.size
    src = ImageOps.mirror(im) if mirrored else im
    scale = DESCRIBE_SCALE if is_page(im.size) else 1.0
    f = min(MAX_UPSCALE, WORK_WIDTH / w) * scale
    ww, hh = max(1, round(w * f)), max(1, round(h * f))
    grey = np.asarray(src.convert("L").resize((ww, hh), Image.Resampling.BILINEAR))
    chunk, pad = round(2 * WORK_WIDTH * scale), round(48 * scale)
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

    def __init__(self, desc: np.ndarray, owners: np.ndarray, keypoints: np.ndarray | None = None, *,
                 forked_threads: int = 0) -> None:
        """``forked_threads`` > 1: build the inverted lists in a forked child using that many
        threads, for a caller (``copywatch eval``) whose own FAISS must stay on one thread
        because it forks worker processes later (see :func:`pipeline.parallel.fork_map`)."""
        self.owners = owners.astype(np.int64)
        #: Index of each row's keypoint in its image's features (where a vote lands).
        self.keypoints = keypoints.astype(np.int64) if keypoints is not None else np.full(len(owners), -1, np.int64)
        self.size = len(owners)
        desc = np.ascontiguousarray(desc, dtype=np.float32)
        if self.size > EXACT_LIMIT and forked_threads > 1:
            import faiss
            from pipeline.parallel import in_forked_child

            _BUILD["desc"] = desc
            try:
                blob = in_forked_child(_serialized_ivf, forked_threads)
            finally:
                _BUILD.clear()
            self._index = faiss.deserialize_index(blob)
        else:
            self._index = _index_of(desc)

    @classmethod
    def build(cls, features: dict[int, LocalFeatures], forked_threads: int = 0) -> "VoteIndex":
        descs, owners, keypoints = [], [], []
        for gid, feats in features.items():
            idx = feats.strongest_in_every_band(VOTE_PER_BLOCK)
            descs.append(feats.desc[idx])
            owners.append(np.full(len(idx), gid, np.int64))
            keypoints.append(idx)
        if not descs:
            return cls(np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
        return cls(np.concatenate(descs), np.concatenate(owners), np.concatenate(keypoints), forked_threads=forked_threads)

    def search(self, desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner products and rows of the ``k`` nearest gallery descriptors (rows -1 when fewer)."""
        if self.size == 0 or len(desc) == 0:
            return np.zeros((len(desc), 0), np.float32), np.zeros((len(desc), 0), np.int64)
        return self._index.search(np.ascontiguousarray(desc, dtype=np.float32), min(k, self.size))

    def votes(self, query: LocalFeatures, k: int = 5) -> dict[int, int]:
        """Votes per gallery image id for the query's strongest descriptors."""
        return self.cast(query, k, both=False).counts[query.mirrored]

    def cast(self, query: LocalFeatures, k: int = 5, both: bool = True) -> "Votes":
        """The query's votes (as given and, with ``both``, mirrored) with where each one landed."""
        votes = Votes({query.mirrored: {}, not query.mirrored: {}}, {})
        if self.size == 0 or len(query) == 0:
            return votes
        strongest = query.strongest(QUERY_VOTES_PER_BLOCK)
        q = query.desc[strongest]
        n = len(q)
        if both:
            q = np.concatenate([q, q[:, MIRROR]])
        sims, rows = self.search(q, k)
        dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims))
        far = dist[:, -1:] if rows.shape[1] >= k else np.full((len(q), 1), np.inf)
        ok = (rows >= 0) & (sims >= VOTE_SIMILARITY) & (dist < VOTE_RATIO * far)
        owners = np.where(ok, self.owners[np.maximum(rows, 0)], -1)
        for flipped, lo, hi in ((False, 0, n), (True, n, len(q))):
            part = owners[lo:hi]
            if not len(part):
                continue
            orientation = query.mirrored != flipped
            qrow = np.repeat(np.arange(len(part)), part.shape[1])
            flat = part.ravel()
            # One vote per query descriptor per image, however many of its neighbours that image holds.
            pairs, first = np.unique(np.stack([qrow, flat], axis=1), axis=0, return_index=True)
            keep = pairs[:, 1] >= 0
            pairs, first = pairs[keep], first[keep]
            gids, counts = np.unique(pairs[:, 1], return_counts=True)
            votes.counts[orientation] = {int(g): int(c) for g, c in zip(gids, counts)}
            landed = self.keypoints[np.maximum(rows[lo:hi].ravel()[first], 0)]
            votes.hits[orientation] = (strongest[pairs[:, 0]], pairs[:, 1], landed)
        return votes


@dataclass
class Votes:
    """A query's votes: counts per orientation and gallery id, and for each vote the query
    keypoint that cast it, the gallery image and the gallery keypoint it landed on (-1 unknown)."""

    counts: dict[bool, dict[int, int]]
    hits: dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def landed(self, mirrored: bool, gallery_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(query keypoint indices, gallery keypoint indices) of the votes for one image."""
        if mirrored not in self.hits:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q, g, kp = self.hits[mirrored]
        sel = g == gallery_id
        return q[sel], kp[sel]


def _index_of(desc: np.ndarray):
    """The FAISS index of a gallery's vote descriptors: exhaustive up to ``EXACT_LIMIT`` of them.

    Above, inverted lists: a query descriptor is compared only with the gallery descriptors of its
    NPROBE nearest of IVF_LISTS * sqrt(n) cells. Exhaustive search costs O(n) per descriptor,
    which at 100k gallery descriptors is most of a query's time. Lists hold each descriptor's
    residual to its cell's centre in half precision: a third less search time than float32 lists
    and half the memory, with the same leading votes (vote counts within 2 of float32's on 80
    detail-page queries).
    """
    import faiss

    n, d = len(desc), 128
    if n <= EXACT_LIMIT:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(IVF_LISTS * np.sqrt(n))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_TRAIN_ITERATIONS
        rng = np.random.default_rng(0)
        index.train(desc[rng.choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), replace=False)])
        index.nprobe = NPROBE
    if n:
        index.add(desc)
    return index


#: What the forked index builder reads (set just before it forks).
_BUILD: dict = {}


def _serialized_ivf(threads: int) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(threads)
    return faiss.serialize_index(_index_of(_BUILD["desc"]))


#: Up to this many gallery descriptors are searched exhaustively; above, with inverted lists.
EXACT_LIMIT = 20_000
#: Inverted lists visited per query descriptor.
NPROBE = 8
#: Inverted lists per square root of the gallery descriptors, and how they are trained (k-means
#: on this many samples per list, this many iterations). More, smaller lists make a query
#: cheaper (about 0.3 s -> 0.1 s for a detail-page query against 150 pages) at a few seconds of
#: training, with the same leading votes (see docs/MATCHING.md).
IVF_LISTS, IVF_TRAIN_PER_LIST, IVF_TRAIN_ITERATIONS = 4, 40, 10


#: Bump when extraction changes: it keys the on-disk feature cache.
FEATURES_VERSION = "rootsift-v2-pages-half"


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
