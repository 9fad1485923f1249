"""CLI commands for models: ``models list``, ``models fetch NAME`` and ``embed IMAGE...``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` (with ``list`` and ``fetch``) and ``embed`` to the top-level subparsers."""
    from models.registry import list_models

    names = ", ".join(list_models())
    p_models = sub.add_parser(
        "models",
        help="list Unicom models and download their released weights",
        description="Unicom models known to copywatch, and their released weights.",
    )
    p_models.set_defaults(func=lambda args: _print_help(p_models))
    msub = p_models.add_subparsers(dest="models_command", metavar="COMMAND")

    p_list = msub.add_parser(
        "list",
        help="show the model registry and which weights are installed",
        description="Show each model's architecture, output size, release file and whether it is in the weights folder.",
    )
    p_list.add_argument("--weights-dir", type=Path, help="weights folder (default: settings, COPYWATCH_WEIGHTS_DIR)")
    p_list.add_argument("--verify", action="store_true", help="also check the SHA-256 of installed files (slow for L sizes)")
    p_list.set_defaults(func=cmd_models_list)

    p_fetch = msub.add_parser(
        "fetch",
        help="download a model's released weights, with progress and checksum",
        description=(
            "Download the released checkpoint of NAME from GitHub into the weights folder, verify its "
            "SHA-256 and move it into place. Without internet, the error says which URL to download "
            "elsewhere and exactly where to copy the file."
        ),
    )
    p_fetch.add_argument("name", metavar="NAME", help=f"model name ({names})")
    p_fetch.add_argument("--weights-dir", type=Path, help="weights folder (default: settings, COPYWATCH_WEIGHTS_DIR)")
    p_fetch.add_argument("--quiet", action="store_true", help="no progress display")
    p_fetch.set_defaults(func=cmd_models_fetch)

    p_embed = sub.add_parser(
        "embed",
        help="embed whole images into an (n, d) float32 .npy of L2-normalised vectors",
        description=(
            "Embed each IMAGE whole (the model's own preprocessing, no tiling) and write an (n, d) "
            "float32 array of L2-normalised vectors to --out, rows in argument order."
        ),
    )
    p_embed.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="image files")
    p_embed.add_argument(
        "--model",
        help=f"'default' (weight-free) or 'unicom:NAME' with NAME one of {names} (default: settings, COPYWATCH_EMBEDDER)",
    )
    p_embed.add_argument("--weights", type=Path, help="explicit checkpoint file in the released layout")
    p_embed.add_argument("--weights-dir", type=Path, help="folder holding released weights files (default: settings)")
    p_embed.add_argument("--out", type=Path, required=True, help="output .npy file")
    p_embed.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p_embed.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, which honours OMP_NUM_THREADS)")
    p_embed.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when present)")
    p_embed.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="auto: bf16 on CPUs with native bf16 / fp16 on CUDA when cosine to fp32 >= 0.998 (default auto)",
    )
    p_embed.set_defaults(func=cmd_embed)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _weights_dir(args: argparse.Namespace) -> Path:
    if args.weights_dir is not None:
        return args.weights_dir
    from pipeline.config import load_settings

    return load_settings().weights_dir


def cmd_models_list(args: argparse.Namespace) -> int:
    """Print the registry as a table, with the install state of each file."""
    from models.loading import ChecksumError, verify_sha256, weights_path
    from models.registry import get_config, list_models

    wdir = _weights_dir(args)
    header = ("name", "input", "patch", "width", "depth", "heads", "dim", "file", "installed")
    rows = []
    for name in list_models():
        c = get_config(name)
        path = weights_path(c, wdir)
        if not path.is_file():
            state = "no"
        elif args.verify:
            try:
                verify_sha256(path, c.sha256)
                state = "yes (verified)"
            except ChecksumError:
                state = "CHECKSUM MISMATCH"
        else:
            state = f"yes ({path.stat().st_size / 1e6:.0f} MB)"
        rows.append((c.name, c.input_size, c.patch_size, c.width, c.depth, c.num_heads, c.embedding_size, c.file_name, state))
    print(_table(header, rows))
    print(f"\nweights folder: {wdir}")
    print("download: copywatch models fetch NAME  (URLs and SHA-256 in docs/MODELS.md)")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    """Download one model's weights into the weights folder."""
    from models.loading import ChecksumError, DownloadError, fetch
    from models.registry import get_config

    try:
        config = get_config(args.name)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    # A progress bar on a terminal; otherwise (logs, CI) fetch logs every 10%.
    bar = _ProgressBar(config.file_name) if not args.quiet and sys.stderr.isatty() else None
    try:
        path = fetch(config, _weights_dir(args), progress=bar or not args.quiet)
    except (DownloadError, ChecksumError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(path)
    return 0


class _ProgressBar:
    """A one-line download progress display on stderr (a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int | None) -> None:
        text = f"{done / 1e6:8.1f} MB" if not total else f"{100 * done / total:5.1f}% of {total / 1e6:.0f} MB"
        print(f"\r{self.label}: {text}", end="", file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed whole images and save an (n, d) float32 .npy, rows in argument order."""
    from models.loading import CheckpointError, WeightsNotFoundError
    from pipeline.config import load_settings
    from pipeline.embed import get_embedder
    from pipeline.images import BadImage, decode

    settings = load_settings()
    spec = args.model or settings.embedder
    if not args.out.suffix == ".npy":
        log.error("--out must end in .npy, got %s", args.out)
        return 2
    images, bad = [], []
    for path in args.images:
        if not path.is_file():
            bad.append(f"{path}: no such file")
            continue
        try:
            images.append(decode(path, max_pixels=settings.max_image_pixels))
        except BadImage as exc:
            bad.append(f"{path}: {exc.reason}")
    if bad:
        log.error("cannot embed %d of %d images (nothing written):\n  %s", len(bad), len(args.images), "\n  ".join(bad))
        return 1
    try:
        if spec.startswith("unicom:"):
            from pipeline.unicom_embedder import UnicomEmbedder

            embedder = UnicomEmbedder(
                spec.split(":", 1)[1], weights=args.weights, weights_dir=args.weights_dir or settings.weights_dir,
                batch_size=args.batch_size, threads=args.threads, device=args.device, precision=args.precision,
            )
        else:
            if args.weights is not None:
                log.warning("--weights is ignored for the %r embedder", spec)
            embedder = get_embedder(spec)
    except (WeightsNotFoundError, CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    vectors = embedder.embed(images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npy")
    np.save(tmp, vectors.astype(np.float32, copy=False))
    tmp.replace(args.out)
    print(f"{args.out}: {vectors.shape[0]} x {vectors.shape[1]} float32 ({embedder.id})")
    return 0


def _table(header: tuple, rows: list[tuple]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
