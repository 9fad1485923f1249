"""The `copywatch` command line: one entry point, one module per group of subcommands."""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("copywatch")


def build_parser() -> argparse.ArgumentParser:
    from pipeline.cli import bench, core, crawl, models, review

    parser = argparse.ArgumentParser(
        prog="copywatch",
        description="Image-theft monitoring for Korean online shops: crawl shops, match their images "
        "against clients' protected galleries, report likely copies.",
        epilog="Settings come from COPYWATCH_* environment variables (COPYWATCH_HOME, COPYWATCH_DATABASE_URL, "
        "COPYWATCH_EMBEDDER, COPYWATCH_THRESHOLD, ...); see README.md.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    core.register(sub)
    crawl.register(sub)
    models.register(sub)
    bench.register(sub)
    review.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from pipeline.runtime import tune_allocator

    tune_allocator()
    try:
        return int(args.func(args) or 0)
    except (LookupError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
