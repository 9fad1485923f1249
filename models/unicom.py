"""Unicom vision transformer, written to load the released checkpoints' state dicts unchanged."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import UnicomConfig

log = logging.getLogger(__name__)

LAYER_NORM_EPS = 1e-5
BATCH_NORM_EPS = 2e-5


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole residual branches per sample (training only)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)


class PatchEmbed(nn.Module):
    """Non-overlapping P x P patches -> D channels, flattened row-major to (B, N, D)."""

    def __init__(self, in_channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv`` has no bias and is split as (3, heads, head_dim)."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        # The default scale of scaled_dot_product_attention is head_dim ** -0.5, as upstream.
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, num_heads: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width, 4 * width)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class UnicomViT(nn.Module):
    """Unicom's ViT: patch tokens (no class token) -> blocks -> LayerNorm -> flatten -> BN head.

    ``forward`` returns the raw BatchNorm feature (not L2-normalised). Build it with
    :func:`build_model`; load weights with ``models.loading`` (which returns it in eval mode).
    """

    def __init__(self, config: UnicomConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.config = config
        d, n = config.width, config.num_patches
        self.patch_embed = PatchEmbed(config.in_channels, d, config.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d))
        # Stochastic depth grows linearly over the blocks (plain Python: works on the meta device).
        rates = [drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(d, config.num_heads, r) for r in rates)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.feature = nn.Sequential(
            nn.Linear(n * d, d, bias=False),
            nn.BatchNorm1d(d, eps=BATCH_NORM_EPS),
            nn.Linear(d, config.embedding_size, bias=False),
            nn.BatchNorm1d(config.embedding_size, eps=BATCH_NORM_EPS),
        )

    def reset_parameters(self, seed: int | None = None) -> "UnicomViT":
        """Random initialisation (for benchmarks and tests; real use loads a checkpoint)."""
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim == 1:  # LayerNorm / BatchNorm scale
                    p.fill_(1.0)
                else:
                    w = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, 0.02, generator=gen).clamp_(-0.04, 0.04)
                    p.copy_(w)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.reset_running_stats()
        return self

    def _check_input(self, x: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.input_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(
                f"{self.config.name} expects input of shape (batch, {c}, {s}, {s}), got {tuple(x.shape)}; "
                "preprocess images with models.transform.build_transform(config)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token features before the head, flattened token-major to (B, N*D), float32."""
        self._check_input(x)
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        # The final LayerNorm runs in float32 whatever the weights' or autocast's precision
        # (upstream calls .float() on the input only, so a .half() model fails there on CPU).
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.layer_norm(
                x.float(), self.norm.normalized_shape,
                self.norm.weight.float(), self.norm.bias.float(), self.norm.eps,
            )
        return x.reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.forward_features(x)
        # The head is small next to the blocks; run it in the weights' own precision,
        # outside autocast, so BatchNorm statistics apply at full precision.
        with torch.autocast(device_type=feats.device.type, enabled=False):
            return self.feature(feats.to(self.feature[0].weight.dtype))


def build_model(config: UnicomConfig, device: str | torch.device | None = None, drop_path_rate: float = 0.0) -> UnicomViT:
    """An uninitialised-for-use model (zeros / default init), in eval mode.

    Pass ``device='meta'`` to inspect parameter names and shapes without allocating memory.
    """
    with torch.device(device or "cpu"):
        model = UnicomViT(config, drop_path_rate=drop_path_rate)
    return model.eval()


def flops_per_image(config: UnicomConfig) -> int:
    """Floating-point operations (2 x multiply-accumulates) of one forward pass.

    Counts the matrix products (patch projection, qkv, attention scores and values, output
    projection, MLP, head); norms, softmax and activations are left out (under 1%).
    """
    n, d, e = config.num_patches, config.width, config.embedding_size
    patch = n * d * config.in_channels * config.patch_size**2
    block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * 4 * d
    head = n * d * d + d * e
    return 2 * (patch + config.depth * block + head)
