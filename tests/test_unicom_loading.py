"""Registry, strict checkpoint loading, checksums and verified downloads of Unicom weights."""
from __future__ import annotations

import hashlib
import io
import urllib.error
from pathlib import Path

import pytest
import torch

from models.loading import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    fetch,
    load_model,
    sha256_file,
)
from models.registry import config_from_dict, custom_config, get_config, list_models
from models.unicom import build_model, flops_per_image

DATA = Path(__file__).parent / "data" / "unicom"
TINY_SD = DATA / "tiny_state_dict.pt"


@pytest.fixture(scope="module")
def tiny_config():
    cfg = torch.load(DATA / "tiny_expected.pt", weights_only=True)["config"]
    return config_from_dict(cfg, name="tiny")


@pytest.fixture
def tiny_sd() -> dict[str, torch.Tensor]:
    return torch.load(TINY_SD, weights_only=True)


def _save(sd, path: Path) -> Path:
    torch.save(sd, path)
    return path


# --- registry -----------------------------------------------------------------------------


def test_registry_names_and_release_files():
    assert list_models() == ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    b32 = get_config("ViT-B/32")
    assert b32.url == "https://github.com/deepglint/unicom/releases/download/b32/FP16-ViT-B-32.pt"
    assert b32.sha256 == "f9d5696a9b58dbbbefee2d31615ca59084f2895a0fdd2ca4c235e0f9b2793f7a"
    l336 = get_config("ViT-L/14@336px")
    assert l336.url.endswith("/l14_336px/FP16-ViT-L-14-336px.pt")
    assert (l336.input_size, l336.patch_size, l336.width, l336.depth, l336.num_heads, l336.embedding_size) == (
        336, 14, 1024, 24, 16, 768,
    )
    assert get_config("vit-l-14-336px") is l336
    assert get_config("FP16-ViT-B-16.pt") is get_config("ViT-B/16")


def test_registry_rejects_unknown_names_and_bad_configs():
    with pytest.raises(ValueError, match="unknown Unicom model 'ViT-H/14'.*ViT-B/32"):
        get_config("ViT-H/14")
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        custom_config(input_size=65, patch_size=16, width=64, depth=1, num_heads=4, embedding_size=8)
    with pytest.raises(ValueError, match="unknown config fields"):
        custom_config(input_size=64, patch_size=16, width=64, depth=1, num_heads=4, embedding_size=8, heads=4)
    cfg = custom_config(input_size=64, patch_size=16, width=64, depth=1, num_heads=4, embedding_size=8)
    assert cfg.url is None and cfg.sha256 is None


def _expected_b32_shapes() -> dict[str, tuple[int, ...]]:
    """The released ViT-B/32 layout, written out from the issue's description."""
    d, n, e, p = 768, 49, 512, 32
    shapes = {"pos_embed": (1, n, d), "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,)}
    for i in range(12):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
        })
    shapes.update({"norm.weight": (d,), "norm.bias": (d,), "feature.0.weight": (d, n * d), "feature.2.weight": (e, d)})
    for idx, width in (("1", d), ("3", e)):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"feature.{idx}.{name}"] = (width,)
        shapes[f"feature.{idx}.num_batches_tracked"] = ()
    return shapes


def test_b32_structure_has_exactly_the_released_keys_and_shapes():
    model = build_model(get_config("ViT-B/32"), device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected_b32_shapes()


def test_flops_per_image_b32():
    # ~4.4 GMAC for ViT-B/32 at 224 px (no class token here: 49 tokens).
    assert 8.5e9 < flops_per_image(get_config("ViT-B/32")) < 9.0e9


# --- strict loading -----------------------------------------------------------------------


def test_missing_key_is_named(tmp_path, tiny_config, tiny_sd):
    del tiny_sd["blocks.1.mlp.fc2.bias"]
    path = _save(tiny_sd, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"(?s)missing keys \(1\):\s+blocks\.1\.mlp\.fc2\.bias") as info:
        load_model(tiny_config, path)
    assert str(path) in str(info.value)


def test_wrong_shape_is_named(tmp_path, tiny_config, tiny_sd):
    tiny_sd["pos_embed"] = torch.zeros(1, 17, 64, dtype=torch.float16)
    path = _save(tiny_sd, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"pos_embed: checkpoint \(1, 17, 64\), model \(1, 16, 64\)"):
        load_model(tiny_config, path)


def test_unexpected_key_is_named_with_prefix_hint(tmp_path, tiny_config, tiny_sd):
    sd = {f"module.{k}": v for k, v in tiny_sd.items()}
    path = _save(sd, tmp_path / "ddp.pt")
    with pytest.raises(CheckpointError, match=r"(?s)missing keys.*unexpected keys.*module\.pos_embed.*hint: keys start with 'module\.'"):
        load_model(tiny_config, path)


def test_wrong_checksum_is_reported(tiny_config):
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"expected SHA-256 {wrong}, got {sha256_file(TINY_SD)}"):
        load_model(tiny_config, TINY_SD, expected_sha256=wrong)


def test_right_checksum_loads(tiny_config):
    model = load_model(tiny_config, TINY_SD, expected_sha256=sha256_file(TINY_SD))
    assert not model.training


def test_non_finite_values_are_rejected(tmp_path, tiny_config, tiny_sd):
    tiny_sd["norm.weight"][3] = float("nan")
    with pytest.raises(CheckpointError, match=r"(?s)NaN or infinite.*norm\.weight"):
        load_model(tiny_config, _save(tiny_sd, tmp_path / "nan.pt"))


def test_not_a_state_dict(tmp_path, tiny_config):
    path = _save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        load_model(tiny_config, path)


def test_num_batches_tracked_missing_or_fp16_is_accepted(tmp_path, tiny_config, tiny_sd):
    del tiny_sd["feature.1.num_batches_tracked"]
    tiny_sd["feature.3.num_batches_tracked"] = torch.tensor(7.0, dtype=torch.float16)
    model = load_model(tiny_config, _save(tiny_sd, tmp_path / "nbt.pt"))
    assert model.feature[3].num_batches_tracked.dtype == torch.int64
    assert int(model.feature[3].num_batches_tracked) == 7
    assert not model.training


# --- fetch --------------------------------------------------------------------------------


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fake_release(payload: bytes, sha: str | None = None):
    return custom_config(
        "fake", input_size=64, patch_size=16, width=64, depth=1, num_heads=4, embedding_size=8,
        file_name="FP16-fake.pt", release_tag="fake", sha256=sha or hashlib.sha256(payload).hexdigest(),
    )


def test_fetch_downloads_verifies_and_renames(tmp_path, monkeypatch):
    payload = b"weights" * 1000
    seen = []
    monkeypatch.setattr("urllib.request.urlopen", lambda req, timeout: _FakeResponse(payload))
    dest = fetch(_fake_release(payload), tmp_path / "w", progress=lambda done, total: seen.append((done, total)))
    assert dest == tmp_path / "w" / "FP16-fake.pt"
    assert dest.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert sorted(p.name for p in dest.parent.iterdir()) == ["FP16-fake.pt"]  # no temp file left
    # Present and verified: no second download.
    monkeypatch.setattr("urllib.request.urlopen", lambda req, timeout: pytest.fail("downloaded again"))
    assert fetch(_fake_release(payload), tmp_path / "w", progress=False) == dest


def test_fetch_rejects_wrong_checksum_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda req, timeout: _FakeResponse(b"tampered"))
    with pytest.raises(ChecksumError, match="nothing was saved"):
        fetch(_fake_release(b"original"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(req, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    config = get_config("ViT-B/32")
    with pytest.raises(DownloadError) as info:
        fetch("ViT-B/32", tmp_path / "weights", progress=False)
    msg = str(info.value)
    assert config.url in msg
    assert str(tmp_path / "weights" / "FP16-ViT-B-32.pt") in msg
    assert config.sha256 in msg
    assert list((tmp_path / "weights").iterdir()) == []


def test_wrong_model_size_is_recognised(tmp_path):
    """A ViT-B/16 file loaded as ViT-B/32: every mismatch is listed, and the hint names B/16."""
    b16 = build_model(get_config("ViT-B/16"), device="meta")
    sd = {k: torch.zeros(v.shape, dtype=torch.float16) for k, v in b16.state_dict().items()}
    b32 = build_model(get_config("ViT-B/32"), device="meta")
    from models.loading import check_state_dict

    with pytest.raises(CheckpointError, match=r"(?s)pos_embed: checkpoint \(1, 196, 768\), model \(1, 49, 768\).*hint: the checkpoint's shapes are those of ViT-B/16"):
        check_state_dict(b32, sd, source="FP16-ViT-B-16.pt")
