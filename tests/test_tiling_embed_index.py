"""Tiling, the weight-free embedder and FAISS search checked against exact numpy search."""
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from pipeline.embed import DefaultEmbedder, Embeddings, get_embedder
from pipeline.index import TileIndex
from pipeline.tiling import GALLERY_TILING, QUERY_TILING, TilingParams, tile_image


def _page(h=3000, w=860, seed=0):
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    for y in range(0, h, 300):
        if (y // 300) % 3 == 2:
            continue  # leave blank bands
        for _ in range(12):
            x0, y0 = rng.integers(0, w - 100), rng.integers(y, y + 200)
            d.rectangle([x0, y0, x0 + rng.integers(20, 100), y0 + rng.integers(20, 90)], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def test_long_image_tiles_cover_the_page_and_skip_blank_ones():
    im = _page()
    p = TilingParams(width=320, stride=160)
    tiles = tile_image(im, p)
    assert all(t.image.size == (320, 320) for t in tiles)
    assert tiles[0].box[1] == 0 and max(t.box[3] for t in tiles) == im.height
    assert all(t.box[0] == 0 and t.box[2] == im.width for t in tiles)
    blank = Image.new("RGB", (860, 3000), "white")
    assert tile_image(blank, p) == []


def test_short_image_is_one_tile_and_mirror_doubles():
    im = _page(h=700)
    assert len(tile_image(im, TilingParams())) == 1
    q = tile_image(im, QUERY_TILING)
    assert [t.mirrored for t in q] == [False, True]
    assert GALLERY_TILING.key != QUERY_TILING.key


def test_default_embedder_is_normalised_and_tells_copies_from_others():
    e = get_embedder("default")
    a, b = _page(h=800, seed=1), _page(h=800, seed=2)
    copy = a.resize((640, 595)).convert("RGB")
    v = e.embed([a, copy, b, ImageOps.mirror(a)])
    assert v.shape == (4, DefaultEmbedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.95
    assert v[0] @ v[2] < v[0] @ v[1] - 0.2


def test_colour_variants_differ():
    e = DefaultEmbedder()
    base = Image.new("RGB", (300, 300), "white")
    red, blue = base.copy(), base.copy()
    ImageDraw.Draw(red).ellipse([60, 60, 240, 240], fill=(200, 30, 30))
    ImageDraw.Draw(blue).ellipse([60, 60, 240, 240], fill=(30, 30, 200))
    v = e.embed([red, blue, red.copy()])
    assert v[0] @ v[2] > 0.999 and v[0] @ v[1] < 0.9


def test_faiss_search_equals_exact_numpy_search():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(500, 64)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(40, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx = TileIndex(g, np.arange(500) // 5, np.zeros((500, 4), np.int32))
    scores, rows = idx.search(q, 10)
    exact = q @ g.T
    ref_rows = np.argsort(-exact, axis=1)[:, :10]
    assert (rows == ref_rows).all()
    assert np.allclose(scores, np.take_along_axis(exact, ref_rows, 1), atol=1e-5)


def test_index_round_trip_and_padding(tmp_path):
    v = np.eye(3, dtype=np.float32)
    idx = TileIndex(v, np.array([7, 8, 9]), np.arange(12, dtype=np.int32).reshape(3, 4), "fp")
    idx.save(tmp_path / "i.npz")
    back = TileIndex.load(tmp_path / "i.npz")
    assert back.fingerprint == "fp" and (back.owners == [7, 8, 9]).all()
    scores, rows = back.search(v[:1], 5)
    assert rows[0, 0] == 0 and (rows[0, 3:] == -1).all()


def test_embeddings_are_checked():
    import pytest

    with pytest.raises(ValueError, match="NaN"):
        Embeddings(np.arange(2), np.array([[np.nan], [1.0]], np.float32))
    with pytest.raises(ValueError, match="unique"):
        Embeddings(np.array([1, 1]), np.ones((2, 3), np.float32))
