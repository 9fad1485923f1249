"""Unicom embedder: the ``models/`` ViT behind the ``Embedder`` protocol (batched, bf16 where safe)."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.loading import WeightsNotFoundError, load_state_dict_strict, read_checkpoint, weights_path
from models.registry import UnicomConfig, get_config
from models.transform import build_transform
from models.unicom import build_model

log = logging.getLogger(__name__)

#: Reduced precision is used only if it keeps at least this cosine to float32 on every
#: calibration image (see docs/MODELS.md for the measurement).
MIN_COSINE = 0.998

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (x86 AVX512-BF16 / AMX, Arm BF16).

    Without it, bf16 autocast on CPU is emulated and slower than float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        log.debug("no /proc/cpuinfo; assuming no native bf16")
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return bool(set(line.split(":", 1)[-1].split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def calibration_images(size: int) -> list[Image.Image]:
    """Four fixed synthetic images (gradient, noise, stripes, blocks) for the precision check."""
    rng = np.random.default_rng(20230401)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    gradient = np.stack([xx, yy, 1 - xx * yy], -1)
    noise = rng.random((size, size, 3))
    stripes = np.stack([(np.sin(xx * 40) > 0), (np.sin(yy * 23) > 0), (np.sin((xx + yy) * 11) > 0)], -1).astype(float)
    blocks = np.kron(rng.random((8, 8, 3)), np.ones((size // 8 + 1, size // 8 + 1, 1)))[:size, :size]
    return [Image.fromarray((a * 255).round().astype(np.uint8), "RGB") for a in (gradient, noise, stripes, blocks)]


class UnicomEmbedder:
    """Whole-image (or tile) embeddings from a Unicom checkpoint, L2-normalised float32.

    ``weights`` is an explicit checkpoint file in the released layout (its checksum is recorded
    in ``id`` but not required to match the release, so fine-tuned checkpoints work); without
    it the released file is looked up in ``weights_dir`` (default: the settings' weights folder)
    and its SHA-256 must match the registry. ``threads`` sets torch's intra-op threads for the
    process; ``device`` defaults to CUDA when present. ``precision`` is ``auto`` (reduced
    precision when it keeps cosine >= ``MIN_COSINE`` to float32), ``fp32``, ``bf16`` or ``fp16``.
    """

    def __init__(
        self,
        name: str,
        weights: str | Path | None = None,
        weights_dir: str | Path | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        device: str | torch.device | None = None,
        *,
        precision: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        precision = precision or "auto"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.config: UnicomConfig = get_config(name)
        self.batch_size = batch_size
        self.weights_path, expected = self._locate(weights, weights_dir)
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        ckpt = read_checkpoint(self.weights_path, expected)
        if weights is not None and ckpt.sha256 != self.config.sha256:
            log.info(
                "%s is not the released %s (sha256 %s); using it as a custom checkpoint of that layout",
                self.weights_path, self.config.file_name, ckpt.sha256[:12],
            )
        self.sha256 = ckpt.sha256
        self.model = load_state_dict_strict(build_model(self.config), ckpt.state_dict, self.weights_path).to(self.device)
        del ckpt
        self.transform = build_transform(self.config)
        self.id = f"unicom:{self.config.name}@{self.sha256[:12]}"
        self.dim = self.config.embedding_size
        self.precision, self.precision_cosine = self._choose_precision(precision)
        log.info(
            "%s ready on %s, %s, %d threads (weights %s)",
            self.id, self.device, self.precision, torch.get_num_threads(), self.weights_path,
        )

    def _locate(self, weights: str | Path | None, weights_dir: str | Path | None) -> tuple[Path, str | None]:
        """The checkpoint path, and the SHA-256 it must have (``None`` for an explicit file)."""
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"Unicom weights file not found: {path}. Put a {self.config.name} checkpoint there, or get the "
                    f"released {self.config.file_name} with `copywatch models fetch {self.config.name}` "
                    f"(download {self.config.url} on a machine with internet) and use the weights folder."
                )
            return path, None
        if weights_dir is None:
            from pipeline.config import load_settings

            weights_dir = load_settings().weights_dir
        path = weights_path(self.config, Path(weights_dir).expanduser())
        if not path.is_file():
            raise WeightsNotFoundError(
                f"Unicom {self.config.name} weights not found: put {self.config.file_name} "
                f"(SHA-256 {self.config.sha256}) at {path}. On a machine with internet run "
                f"`copywatch models fetch {self.config.name} --weights-dir {path.parent}` "
                f"(or download {self.config.url}) and copy the file there; or pass an explicit weights file."
            )
        return path, self.config.sha256

    def _autocast(self, precision: str):
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[precision])

    def _choose_precision(self, requested: str) -> tuple[str, float | None]:
        """The precision to embed with, and its measured min cosine to fp32 (None if not measured)."""
        if requested == "fp32":
            return "fp32", None
        if requested == "auto":
            if self.device.type == "cuda":
                candidate = "fp16"
            elif self.device.type == "cpu" and cpu_supports_bf16():
                candidate = "bf16"
            else:
                return "fp32", None
        else:
            candidate = requested
        x = self.transform.batch(calibration_images(self.config.input_size)).to(self.device)
        reference = self._run(x, "fp32")
        reduced = self._run(x, candidate)
        cosine = float((reference * reduced).sum(dim=1).min())
        if requested == "auto" and not cosine >= MIN_COSINE:  # also catches NaN
            log.warning(
                "%s: %s keeps only cosine %.5f to fp32 (< %.3f); using fp32",
                self.config.name, candidate, cosine, MIN_COSINE,
            )
            return "fp32", cosine
        if not cosine >= MIN_COSINE:
            log.warning("%s: %s requested although it keeps only cosine %.5f to fp32", self.config.name, candidate, cosine)
        log.info("%s: %s autocast, min cosine to fp32 %.5f on calibration images", self.config.name, candidate, cosine)
        return candidate, cosine

    def _run(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        with torch.inference_mode(), self._autocast(precision):
            y = self.model(x)
        return F.normalize(y.float(), dim=1)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors, in input order."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = self.transform.batch(chunk).to(self.device, non_blocking=True)
            out[start : start + len(chunk)] = self._run(x, self.precision).cpu().numpy()
        if not np.isfinite(out).all():
            raise RuntimeError(f"{self.id} produced NaN or infinite values ({self.precision}); try precision='fp32'")
        return out
