"""``copywatch bench embed``: Unicom images/s per model size beside the machine's matmul rates."""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported inside the functions: building the CLI parser stays fast
    import torch

log = logging.getLogger(__name__)

_PRECISIONS = ("fp32", "bf16", "fp16")
_LARGE = ("ViT-L/14", "ViT-L/14@336px")


def add(bench_sub: argparse._SubParsersAction) -> None:
    """Add ``embed`` to the ``bench`` subparsers."""
    from models.registry import list_models

    names = list_models()
    p = bench_sub.add_parser(
        "embed",
        help="Unicom images/s per model size, beside the machine's bf16 and fp32 matmul rates",
        description=(
            "Time Unicom forward passes with random weights (speed does not depend on the weights) "
            "for each model size and precision, and measure in the same run the machine's fp32 and "
            "bf16 matrix-multiply GFLOP/s. The table shows images/s, the model's GFLOP per image, the "
            "achieved GFLOP/s and its share of the matmul rate. Preprocessing is timed separately. "
            "L sizes are skipped with --skip-large, or when memory or the time budget is short."
        ),
    )
    p.add_argument("--models", nargs="+", default=names, metavar="NAME", help=f"models to time (default: {' '.join(names)})")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement; the fastest repetition counts (default 5)")
    p.add_argument("--skip-large", action="store_true", help="skip the L sizes")
    p.add_argument(
        "--precisions", nargs="+", choices=_PRECISIONS, metavar="P",
        help="fp32 bf16 fp16 (default: fp32 plus bf16 on CPUs with native bf16, fp32 bf16 fp16 on CUDA)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=cmd_bench_embed)


@dataclass
class Row:
    model: str
    precision: str
    images_per_s: float | None = None
    gflop_per_image: float = 0.0
    matmul_gflops: float = 0.0  # same precision, timed interleaved with this row's model
    note: str = ""


def _dtype(precision: str) -> "torch.dtype":
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


Step = tuple[Callable[[], object], float]  # (a callable to time, its work: GFLOP or images)


def best_rates(steps: list[Step], seconds: float, device: torch.device) -> list[float]:
    """Work per second of each step, from the fastest of its repetitions over about ``seconds``.

    The steps run interleaved (a, b, a, b, ...) so that on a machine shared with other work
    they see the same quiet and busy moments; the fastest repetition (as ``timeit`` advises)
    then estimates each one's speed when nothing else runs, and their ratio stays fair.
    """
    for step, _ in steps:  # warm-up: allocations, kernel selection
        step()
    _sync(device)
    best = [float("inf")] * len(steps)
    start, rounds = time.perf_counter(), 0
    while rounds == 0 or time.perf_counter() - start < seconds:
        for i, (step, _) in enumerate(steps):
            t0 = time.perf_counter()
            step()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - t0)
        rounds += 1
    log.debug("%d rounds in %.1f s", rounds, time.perf_counter() - start)
    return [work / t for (_, work), t in zip(steps, best)]


def matmul_step(dtype: torch.dtype, device: torch.device) -> Step:
    """One square matrix product in ``dtype`` (n=2048 on CPU, 8192 on CUDA); work in GFLOP."""
    import torch

    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def step() -> None:
        with torch.inference_mode():
            torch.mm(a, b)

    return step, 2 * n**3 / 1e9


def model_step(model: torch.nn.Module, size: int, precision: str, batch: int, device: torch.device) -> Step:
    """One forward pass on a random batch under inference mode (autocast unless fp32); work in images."""
    import torch

    x = torch.randn(batch, 3, size, size, device=device)

    def step() -> None:
        with torch.inference_mode():
            if precision == "fp32":
                model(x)
            else:
                with torch.autocast(device_type=device.type, dtype=_dtype(precision)):
                    model(x)

    return step, float(batch)


def _available_memory(device: torch.device) -> int | None:
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError as exc:
        log.debug("cannot read /proc/meminfo: %s", exc)
    return None


def _memory_needed(config, batch: int) -> int:
    """Rough peak bytes: fp32 weights, one reduced-precision copy, and a block's activations."""
    params = sum(p.numel() for p in _meta_model(config).parameters())
    n, d = config.num_patches, config.width
    acts = batch * (n * d * 4 * 8 + config.num_heads * n * n * 2) * 4
    return int(params * 6 + acts * 2)


def _meta_model(config):
    from models.unicom import build_model

    return build_model(config, device="meta")


def preprocess_images_per_s(config, seconds: float) -> float:
    """Images/s of the model's preprocessing on a 860 x 1200 RGB tile (one thread)."""
    import numpy as np
    import torch
    from PIL import Image

    from models.transform import build_transform

    transform = build_transform(config)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (1200, 860, 3), dtype=np.uint8), "RGB")
    (rate,) = best_rates([(lambda: transform(img), 1.0)], seconds, torch.device("cpu"))
    return rate


def cmd_bench_embed(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    import torch

    from models.registry import get_config
    from models.unicom import build_model, flops_per_image
    from pipeline.unicom_embedder import cpu_supports_bf16

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        configs = [get_config(m) for m in args.models]
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if args.batch < 1 or args.seconds <= 0:
        log.error("--batch must be >= 1 and --seconds > 0")
        return 2
    if args.precisions:
        precisions = list(dict.fromkeys(args.precisions))
    elif device.type == "cuda":
        precisions = ["fp32", "bf16", "fp16"]
    else:
        precisions = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None and load > 0.5:
        log.warning("load average %.2f before the run: other work shares the CPUs, figures will be noisy", load)

    # Matmul rates are measured once at the start for the header line, and again interleaved
    # with each model timing so that each row's ratio compares like with like.
    matmul: dict[str, float] = {}  # best rate seen during the run, per precision
    mm_steps = {p: matmul_step(_dtype(p), device) for p in dict.fromkeys(["fp32", "bf16", *precisions])}
    for p, step in mm_steps.items():
        (matmul[p],) = best_rates([step], min(args.seconds, 2.0), device)
        log.info("%s matmul: %.1f GFLOP/s", p, matmul[p])

    rows: list[Row] = []
    budget = 4 * args.seconds  # longest acceptable warm-up + one batch, estimated
    for config in configs:
        gflop = flops_per_image(config) / 1e9
        skip = ""
        if args.skip_large and config.name in _LARGE:
            skip = "skipped (--skip-large)"
        else:
            need, avail = _memory_needed(config, args.batch), _available_memory(device)
            if avail is not None and need > 0.8 * avail:
                skip = f"skipped (memory: needs ~{need / 1e9:.1f} GB, {avail / 1e9:.1f} GB free)"
        if skip:
            rows.extend(Row(config.name, p, None, gflop, matmul[p], skip) for p in precisions)
            log.info("%s: %s", config.name, skip)
            continue
        model = None
        for p in precisions:
            est = 2 * args.batch * gflop / matmul[p]
            if est > budget:
                rows.append(Row(config.name, p, None, gflop, matmul[p], f"skipped (time: ~{est:.0f} s for warm-up + one batch)"))
                log.info("%s %s: skipped, estimated %.0f s for warm-up + one batch", config.name, p, est)
                continue
            if model is None:
                log.info("building %s with random weights", config.name)
                model = build_model(config).reset_parameters(seed=0).requires_grad_(False).to(device).eval()
            log.info("timing %s %s, batch %d, %.0f s", config.name, p, args.batch, args.seconds)
            steps = [model_step(model, config.input_size, p, args.batch, device), mm_steps[p]]
            ips, mm = best_rates(steps, args.seconds, device)
            matmul[p] = max(matmul[p], mm)
            rows.append(Row(config.name, p, ips, gflop, mm))
            log.info("%s %s: %.1f images/s (matmul %.1f GFLOP/s)", config.name, p, ips, mm)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    prep = preprocess_images_per_s(configs[0], min(args.seconds, 2.0)) if configs else None
    _print_report(device, matmul, rows, args, prep, configs[0].input_size if configs else None, load)
    return 0


def _print_report(device, matmul, rows, args, prep, prep_size, load) -> None:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; {args.seconds:g} s per measurement")
    if load is not None:
        print(f"load average before the run: {load:.2f}" + (" (other work was running: figures are noisy)" if load > 0.5 else ""))
    ratio = matmul["bf16"] / matmul["fp32"]
    print(
        f"matmul (best in run): fp32 {matmul['fp32']:.1f} GFLOP/s, bf16 {matmul['bf16']:.1f} GFLOP/s, bf16/fp32 {ratio:.2f}"
        + (f", fp16 {matmul['fp16']:.1f} GFLOP/s" if "fp16" in matmul else "")
    )
    header = ("model", "prec", "images/s", "GFLOP/img", "achieved GFLOP/s", "matmul GFLOP/s", "of matmul", "matmul-bound images/s")
    table = []
    for r in rows:
        mm = r.matmul_gflops
        if r.images_per_s is None:
            table.append((r.model, r.precision, "-", f"{r.gflop_per_image:.1f}", "-", f"{mm:.0f}", "-", f"{mm / r.gflop_per_image:.1f}", r.note))
            continue
        achieved = r.images_per_s * r.gflop_per_image
        table.append((
            r.model, r.precision, f"{r.images_per_s:.1f}", f"{r.gflop_per_image:.1f}", f"{achieved:.0f}",
            f"{mm:.0f}", f"{100 * achieved / mm:.0f}%", f"{mm / r.gflop_per_image:.1f}", "",
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(header + ("",), *table)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i > 1 and i < 8 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()  # noqa: E731
    print(fmt(header + ("",)))
    print("  ".join("-" * w for w in widths[:-1]))
    for t in table:
        print(fmt(t))
    if prep is not None:
        print(f"preprocessing (PIL bicubic, one thread, 860x1200 RGB -> {prep_size}): {prep:.0f} images/s")
    print(
        "achieved = images/s x GFLOP/img; 'of matmul' = achieved / the same precision's matmul rate, "
        "timed interleaved with that row; random weights; fastest repetition of each timing."
    )
