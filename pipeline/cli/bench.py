"""`copywatch bench ...`: benchmark commands (embedding speed, benchmark set building)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: embedding speed, building evaluation sets",
                       description="Benchmark commands. Each prints its figures.")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    from pipeline.cli import bench_build, bench_embed

    bench_embed.add(bench_sub)
    bench_build.add(bench_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
