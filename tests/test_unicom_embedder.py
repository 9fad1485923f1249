"""The Unicom embedder and its CLI commands, end to end with a random B/32 checkpoint."""
from __future__ import annotations

import argparse
import logging
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.loading import ChecksumError, WeightsNotFoundError, sha256_file
from models.registry import get_config
from models.unicom import build_model
from pipeline import unicom_embedder
from pipeline.cli import bench_embed
from pipeline.cli import models as models_cli
from pipeline.embed import Embedder, get_embedder
from pipeline.unicom_embedder import MIN_COSINE, UnicomEmbedder, cpu_supports_bf16


@pytest.fixture(scope="module")
def b32_checkpoint(tmp_path_factory) -> Path:
    """A random ViT-B/32 checkpoint in the released layout: fp16 floats, int64 counters."""
    model = build_model(get_config("ViT-B/32")).reset_parameters(seed=3)
    with torch.no_grad():
        for bn in (model.feature[1], model.feature[3]):
            bn.running_mean.normal_(0.0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "random-b32.pt"
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def embedder(b32_checkpoint) -> UnicomEmbedder:
    return UnicomEmbedder("ViT-B/32", weights=b32_checkpoint, batch_size=2, precision="fp32")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for w, h in ((300, 200), (120, 400), (224, 224)):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        out.append(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copywatch")
    sub = parser.add_subparsers(dest="command")
    models_cli.register(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command")
    bench_embed.add(bench)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_embedder_protocol_id_and_dim(embedder, b32_checkpoint):
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 512
    assert embedder.id == f"unicom:ViT-B/32@{sha256_file(b32_checkpoint)[:12]}"
    assert not embedder.model.training


def test_embed_is_normalised_batched_and_in_order(embedder, images):
    vecs = embedder.embed(images)  # batch_size 2: two forward passes
    assert vecs.shape == (3, 512) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one = embedder.embed(images[2:3])  # batch of 1 (eval-mode BatchNorm)
    np.testing.assert_allclose(one[0], vecs[2], atol=1e-5)
    assert embedder.embed([]).shape == (0, 512)


def test_get_embedder_dispatches(b32_checkpoint):
    emb = get_embedder("unicom:ViT-B/32", weights=b32_checkpoint)
    assert isinstance(emb, UnicomEmbedder) and emb.dim == 512
    if cpu_supports_bf16():
        assert emb.precision == "bf16"
        assert emb.precision_cosine >= MIN_COSINE
    else:
        assert emb.precision == "fp32"


def test_reduced_precision_falls_back_when_cosine_is_too_low(embedder, monkeypatch):
    monkeypatch.setattr(unicom_embedder, "MIN_COSINE", 1.01)
    monkeypatch.setattr(unicom_embedder, "cpu_supports_bf16", lambda: True)
    precision, cosine = embedder._choose_precision("auto")
    assert precision == "fp32" and cosine is not None and cosine > 0.99


def test_missing_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        UnicomEmbedder("ViT-B/32", weights_dir=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "FP16-ViT-B-32.pt") in msg
    assert "copywatch models fetch ViT-B/32" in msg


def test_weights_folder_file_must_be_the_release(tmp_path, b32_checkpoint):
    (tmp_path / "FP16-ViT-B-32.pt").symlink_to(b32_checkpoint)
    with pytest.raises(ChecksumError, match="f9d5696a9b58"):
        UnicomEmbedder("ViT-B/32", weights_dir=tmp_path)


def test_cli_embed_end_to_end(tmp_path, b32_checkpoint, embedder, images, capsys):
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        im.save(paths[-1])
    out = tmp_path / "vecs.npy"
    argv = ["embed", str(paths[1]), str(paths[0]), str(paths[2]), "--model", "unicom:ViT-B/32",
            "--weights", str(b32_checkpoint), "--out", str(out), "--precision", "fp32"]
    assert _run(argv) == 0
    vecs = np.load(out)
    assert vecs.shape == (3, 512) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    expected = embedder.embed([images[1], images[0], images[2]])  # argument order
    np.testing.assert_allclose(vecs, expected, atol=1e-5)
    assert "3 x 512 float32" in capsys.readouterr().out


def test_cli_embed_default_model_and_bad_input(tmp_path, images, caplog):
    img = tmp_path / "a.png"
    images[0].save(img)
    out = tmp_path / "d.npy"
    assert _run(["embed", str(img), "--model", "default", "--out", str(out)]) == 0
    vecs = np.load(out)
    assert vecs.shape[0] == 1 and vecs.dtype == np.float32
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with caplog.at_level(logging.ERROR):
        rc = _run(["embed", str(img), str(tmp_path / "broken.jpg"), "--model", "default", "--out", str(tmp_path / "x.npy")])
    assert rc == 1 and not (tmp_path / "x.npy").exists()
    assert "broken.jpg" in caplog.text


def test_cli_models_list_and_offline_fetch(tmp_path, monkeypatch, capsys, caplog):
    assert _run(["models", "list", "--weights-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "ViT-L/14@336px" in listing and "FP16-ViT-B-32.pt" in listing

    def offline(req, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with caplog.at_level(logging.ERROR):
        assert _run(["models", "fetch", "ViT-B/16", "--weights-dir", str(tmp_path), "--quiet"]) == 1
    assert str(tmp_path / "FP16-ViT-B-16.pt") in caplog.text


def test_bench_embed_smoke(capsys):
    argv = ["bench", "embed", "--models", "ViT-B/32", "ViT-L/14", "--skip-large", "--batch", "1",
            "--seconds", "0.01", "--precisions", "fp32"]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "bf16/fp32" in out
    assert "ViT-B/32" in out and "skipped (--skip-large)" in out
