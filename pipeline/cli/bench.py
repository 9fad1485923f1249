"""`copywatch bench ...`: benchmark commands (embedding speed, benchmark set building)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: embedding speed, building evaluation sets",
                       description="Benchmark commands. Each prints its figures.")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    from pipeline.cli import bench_build, bench_embed

    bench_embed.add(bench_sub)
    bench_build.add(bench_sub)
    t = bench_sub.add_parser(
        "threshold",
        help="calibrate the report threshold from eval outputs",
        description=("Read the rankings.csv and metrics.json that `copywatch eval` wrote for each set and print "
                     "the lowest score threshold from which every set keeps the target precision at every higher "
                     "cut-off, and sets without copies (the unrelated set) have no finding at all; then precision, "
                     "recall and predictions per set at that threshold. Set it with COPYWATCH_THRESHOLD."),
    )
    t.add_argument("evals", nargs="+", metavar="EVAL_DIR", help="output folders of copywatch eval")
    t.add_argument("--precision", type=float, default=0.99, help="target precision (default 0.99)")
    t.set_defaults(func=cmd_threshold)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_threshold(args) -> int:
    from pathlib import Path

    from pipeline.evaluate import read_scored
    from pipeline.metrics import calibrate_threshold

    sets = {}
    for folder in args.evals:
        dataset, rows, truth = read_scored(Path(folder))
        sets[f"{folder} ({Path(dataset).name})"] = (rows, truth)
    cal = calibrate_threshold(sets, args.precision)
    print(f"threshold {cal.threshold:.4f} (target precision {cal.target_precision})")
    for name, precision, recall, n in cal.sets:
        rec = "n/a" if recall != recall else f"{recall:.4f}"
        print(f"  {name}: precision {precision:.4f}  recall {rec}  predictions {n}")
    return 0
