"""``copywatch bench build``: write study-style type1 / type2 / combined / unrelated evaluation sets from licensed photos."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add(bench_sub: argparse._SubParsersAction) -> None:
    """Add ``build`` to the ``bench`` subparsers."""
    p = bench_sub.add_parser(
        "build",
        help="build type1 / type2 / combined / unrelated evaluation sets from licensed photos",
        description=(
            "Write OUT/type1 (transformed copies of product photos plus non-copies, colour variants "
            "of gallery styles among them), OUT/type2 (long Korean detail pages as gallery; queries are "
            "parts recomposed as a copier would: 640-1000 px wide, own banners, watermark, 60-100%% width "
            "crop, recompression; non-copies include parts of other pages sharing the same boilerplate "
            "banners), OUT/combined (both galleries and both query sets) and OUT/unrelated (the combined "
            "gallery and 1,000 suspects that copy none of it: photos left out of every gallery and parts "
            "of new pages sharing the gallery pages' header and notice). Each set holds gallery/, "
            "queries/, truth.csv (query,gallery) and meta.json (transforms and ground-truth boxes), "
            "the layout `copywatch eval` reads. Deterministic for a given seed and photo set."
        ),
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (type1/, type2/, combined/, unrelated/ are replaced)")
    p.add_argument("--photos", type=Path, nargs="+", required=True, metavar="DIR",
                   help="folders of licensed photos (searched recursively for jpg/png/webp)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", choices=("small", "full"), default="full",
                   help="full: about study scale, a few minutes on 2 cores; small: seconds, for tests (default full)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    p.set_defaults(func=cmd_bench_build)


def cmd_bench_build(args: argparse.Namespace) -> int:
    from pipeline.benchset import build_bench

    summary = build_bench(args.out, args.photos, seed=args.seed, size=args.size, workers=args.workers)
    for name in ("type1", "type2", "combined", "unrelated"):
        log.info("%s: %s", args.out / name, summary[name])
    print(f"built {args.out} ({args.size}, seed {args.seed}) in {summary['seconds']} s: "
          f"type1 {summary['type1']}, type2 {summary['type2']}, combined {summary['combined']}, "
          f"unrelated {summary['unrelated']}")
    return 0
