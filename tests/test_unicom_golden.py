"""Golden tests: the from-scratch Unicom ViT and preprocessing reproduce the reference outputs."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.loading import load_model
from models.registry import config_from_dict
from models.transform import build_transform
from models.unicom import build_model

DATA = Path(__file__).parent / "data" / "unicom"


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(DATA / "tiny_expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny(expected):
    config = config_from_dict(expected["config"], name="tiny")
    return load_model(config, DATA / "tiny_state_dict.pt")


def test_tiny_config_matches_readme(expected):
    config = config_from_dict(expected["config"], name="tiny")
    assert (config.input_size, config.patch_size, config.width, config.depth, config.num_heads, config.embedding_size) == (
        64, 16, 64, 2, 4, 32,
    )


def test_tiny_state_dict_loads_strictly_in_eval_mode(tiny):
    assert not tiny.training
    assert all(not m.training for m in tiny.modules())
    assert tiny.pos_embed.dtype == torch.float32  # fp16 checkpoint converted for CPU


def test_embedding_matches_reference(tiny, expected):
    with torch.inference_mode():
        out = tiny(expected["input"])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected["embedding"], atol=1e-5, rtol=0)


def test_forward_features_match_reference(tiny, expected):
    with torch.inference_mode():
        feats = tiny.forward_features(expected["input"])
    assert feats.shape == expected["forward_features"].shape
    torch.testing.assert_close(feats, expected["forward_features"], atol=1e-5, rtol=0)


def test_batch_of_one_uses_running_statistics(tiny, expected):
    """Upstream's train-mode model fails on a batch of 1; ours is in eval mode."""
    with torch.inference_mode():
        one = tiny(expected["input"][1:2])
    torch.testing.assert_close(one[0], expected["embedding"][1], atol=1e-5, rtol=0)


def test_half_model_runs_on_cpu(tiny, expected):
    """Upstream's ``.half()`` fails at the final LayerNorm on CPU; ours keeps it in float32."""
    half = build_model(tiny.config)
    half.load_state_dict(tiny.state_dict())
    half = half.half().eval()
    with torch.inference_mode():
        out = half(expected["input"].half())
    torch.testing.assert_close(out.float(), expected["embedding"], atol=5e-3, rtol=0)


def test_forward_rejects_wrong_input_size(tiny):
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 3, 64, 64\)"):
        tiny(torch.zeros(1, 3, 224, 224))


def test_transform_224_reproduces_reference_exactly(expected):
    img = Image.open(io.BytesIO(expected["transform_input_png"]))
    config = config_from_dict({**expected["config"], "input_size": 224, "patch_size": 16}, name="tiny-224")
    x = build_transform(config)(img)
    assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
    assert torch.equal(x, expected["transform_224"])


def test_transform_handles_palette_and_portrait_images():
    config = config_from_dict({"input_size": 64, "patch_size": 16, "dim": 64, "embedding_size": 32, "depth": 2, "num_heads": 4})
    transform = build_transform(config)
    palette = Image.new("P", (40, 300))
    assert transform(palette).shape == (3, 64, 64)
    assert transform.batch([Image.new("RGB", (300, 40)), Image.new("L", (64, 64))]).shape == (2, 3, 64, 64)
