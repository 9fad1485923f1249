"""Checkpoint loading (strict, checksummed, eval mode) and verified downloads of released weights."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch

from models.registry import UnicomConfig, get_config
from models.unicom import UnicomViT, build_model

log = logging.getLogger(__name__)

#: Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.
ProgressFn = Callable[[int, "int | None"], None]

_CHUNK = 1 << 20
_MAX_LISTED = 20


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the model as it is."""


class ChecksumError(CheckpointError):
    """A file whose SHA-256 is not the expected one."""


class WeightsNotFoundError(FileNotFoundError):
    """The weights file is not where it was looked for."""


class DownloadError(RuntimeError):
    """The released weights could not be downloaded (no network, HTTP error, ...)."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> str:
    """Return the file's SHA-256, or raise :class:`ChecksumError` if it is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}. "
            "The file is truncated, corrupt or a different checkpoint; delete it and download it again."
        )
    return actual


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from disk, with the file's SHA-256."""

    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]


def read_checkpoint(path: str | Path, expected_sha256: str | None = None) -> Checkpoint:
    """Hash (and, given ``expected_sha256``, verify) a file, then load it with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file not found: {path}")
    digest = verify_sha256(path, expected_sha256) if expected_sha256 else sha256_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, RuntimeError) for bad files
        raise CheckpointError(f"cannot read {path} as a PyTorch state dict: {exc}") from exc
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(
            f"{path} is not a plain state dict (a mapping of names to tensors); got {type(obj).__name__}"
        )
    return Checkpoint(path=path, sha256=digest, state_dict=dict(obj))


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def check_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Validate ``state_dict`` against ``model`` and return it converted to the model's dtypes.

    Strict: every key must be present with the model's shape, and no other key may appear.
    The one tolerance is ``num_batches_tracked`` of BatchNorm layers, which may be missing
    (the model's own counter is kept) or stored as a float (as in fp16 checkpoints).
    Raises :class:`CheckpointError` listing every problem (prefixed with ``source``, the file).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched, bad_values = [], []
    converted: dict[str, torch.Tensor] = {}
    for key, target in expected.items():
        if key not in state_dict:
            converted[key] = target  # only num_batches_tracked reaches here without an error
            continue
        src = state_dict[key]
        if tuple(src.shape) != tuple(target.shape):
            mismatched.append(f"{key}: checkpoint {tuple(src.shape)}, model {tuple(target.shape)}")
            continue
        if key.endswith("num_batches_tracked"):
            converted[key] = src.detach().round().to(target.dtype) if src.is_floating_point() else src.to(target.dtype)
            continue
        if target.is_floating_point() and not src.is_floating_point():
            mismatched.append(f"{key}: checkpoint dtype {src.dtype}, model expects a floating tensor")
            continue
        if src.is_floating_point() and not bool(torch.isfinite(src).all()):
            bad_values.append(key)
        converted[key] = src.detach().to(target.dtype)
    problems = []
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if mismatched:
        problems.append(_listing("shape or dtype mismatches", mismatched))
    if bad_values:
        problems.append(_listing("tensors with NaN or infinite values", bad_values))
    if problems:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        hint = ""
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = "\n  hint: keys start with 'module.': a training (DDP) checkpoint, not the released layout"
        elif mismatched and (guess := guess_model(state_dict)):
            hint = f"\n  hint: the checkpoint's shapes are those of {' or '.join(guess)}"
        where = f"{source}: " if source is not None else ""
        raise CheckpointError(
            f"{where}checkpoint does not fit {name} (strict loading):\n" + "\n".join(problems) + hint
        )
    return converted


def guess_model(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Registry names whose layout fits the checkpoint's main shapes (for error hints)."""
    from models.registry import list_models

    def shape(key: str) -> tuple[int, ...] | None:
        t = state_dict.get(key)
        return tuple(t.shape) if isinstance(t, torch.Tensor) else None

    depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    fits = []
    for name in list_models():
        c = get_config(name)
        if (
            shape("pos_embed") == (1, c.num_patches, c.width)
            and shape("patch_embed.proj.weight") == (c.width, c.in_channels, c.patch_size, c.patch_size)
            and shape("feature.2.weight") == (c.embedding_size, c.width)
            and depth == c.depth
        ):
            fits.append(name)
    return fits


def load_state_dict_strict(
    model: UnicomViT, state_dict: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> UnicomViT:
    """Load a validated state dict into ``model`` (converting fp16 to the model's dtype); eval mode."""
    converted = check_state_dict(model, state_dict, source)
    model.load_state_dict(converted, strict=True)
    model.requires_grad_(False)
    return model.eval()


def load_model(
    config: UnicomConfig | str,
    path: str | Path,
    *,
    expected_sha256: str | None = None,
    device: str | torch.device | None = None,
) -> UnicomViT:
    """Build ``config``'s model, load the checkpoint at ``path`` strictly, return it in eval mode.

    Weights are float32 (fp16 checkpoints are converted; fp16 would fail or crawl on CPU);
    use autocast for reduced precision. ``expected_sha256``, when given, is verified first.
    """
    if isinstance(config, str):
        config = get_config(config)
    ckpt = read_checkpoint(path, expected_sha256)
    model = load_state_dict_strict(build_model(config), ckpt.state_dict, ckpt.path)
    log.info("loaded %s from %s (sha256 %s)", config.name, ckpt.path, ckpt.sha256[:12])
    if device is not None:
        model.to(device)
    return model.eval()


def weights_path(config: UnicomConfig | str, weights_dir: str | Path) -> Path:
    """Where the released file of ``config`` lives inside ``weights_dir``."""
    if isinstance(config, str):
        config = get_config(config)
    if config.file_name is None:
        raise ValueError(f"{config.name} has no released weights file")
    return Path(weights_dir) / config.file_name


def _manual_instructions(config: UnicomConfig, dest: Path) -> str:
    return (
        f"On a machine with internet, download {config.url} "
        f"(for example: curl -L -o {config.file_name} '{config.url}'), check that its SHA-256 is "
        f"{config.sha256} (sha256sum {config.file_name}), and copy it to {dest}"
    )


def fetch(
    name: str | UnicomConfig,
    weights_dir: str | Path,
    progress: bool | ProgressFn = True,
    *,
    timeout: float = 30.0,
) -> Path:
    """Download the released weights of ``name`` into ``weights_dir``; return the file's path.

    A file already there with the right SHA-256 is kept. The download goes to a temporary file
    in the same folder, is checksummed, then renamed into place atomically, so a half-finished
    download never has the final name. ``progress`` is ``True`` (log every 10%), ``False``, or a
    callable ``(done_bytes, total_bytes_or_None)``. Raises :class:`DownloadError` when the file
    cannot be downloaded (the message says where to put a copy made elsewhere) and
    :class:`ChecksumError` when the download is not the released file.
    """
    config = get_config(name) if isinstance(name, str) else name
    if config.url is None or config.sha256 is None:
        raise ValueError(f"{config.name} has no released weights to fetch")
    weights_dir = Path(weights_dir)
    dest = weights_path(config, weights_dir)
    if dest.is_file():
        try:
            verify_sha256(dest, config.sha256)
        except ChecksumError as exc:
            log.warning("replacing %s: %s", dest, exc)
        else:
            log.info("%s is already present and verified: %s", config.name, dest)
            return dest
    weights_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s to %s", config.name, config.url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{config.file_name}.", suffix=".part", dir=weights_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(config.url, out, progress, timeout, config.name)
        if digest != config.sha256:
            raise ChecksumError(
                f"downloaded {config.url} but its SHA-256 is {digest}, not {config.sha256}; nothing was saved. "
                + _manual_instructions(config, dest)
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are shared with workers
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {config.url}: {reason}. " + _manual_instructions(config, dest)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("saved %s (sha256 verified)", dest)
    return dest


def _download(url: str, out, progress: bool | ProgressFn, timeout: float, label: str) -> str:
    """Stream ``url`` into the open file ``out``; return the SHA-256 of what was written."""
    h = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "copywatch-models/0.1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        total_header = resp.headers.get("Content-Length")
        total = int(total_header) if total_header and total_header.isdigit() else None
        done, next_log, started = 0, 0.1, time.monotonic()
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            h.update(chunk)
            done += len(chunk)
            if callable(progress):
                progress(done, total)
            elif progress and total and done / total >= next_log:
                rate = done / max(time.monotonic() - started, 1e-6) / 1e6
                log.info("%s: %.0f%% of %.0f MB (%.1f MB/s)", label, 100 * done / total, total / 1e6, rate)
                next_log += 0.1
    if total is not None and done != total:
        raise DownloadError(f"download of {url} ended after {done} of {total} bytes")
    return h.hexdigest()
