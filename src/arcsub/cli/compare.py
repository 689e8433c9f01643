"""``arcsub compare RESULTS...``: evaluations side by side, and whether the best one
really beats the next (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path

from ..console import say, show_arcsub_lines

DEFAULT_OUT = "runs/compare"


def cmd_compare(args) -> int:
    from ..evaluate import (
        compare_evaluations,
        comparison_text,
        load_evaluation,
        plot_comparison,
        write_comparison_json,
        write_comparison_markdown,
    )

    show_arcsub_lines()
    evaluations = [load_evaluation(path) for path in args.results]
    comparison = compare_evaluations(evaluations, seed=args.seed, resamples=args.resamples)
    print(comparison_text(comparison))
    out = Path(args.out)
    say(f"wrote {write_comparison_json(comparison, out / 'comparison.json')}")
    say(f"wrote {write_comparison_markdown(comparison, out / 'comparison.md')}")
    say(f"wrote {plot_comparison(comparison, args.plot or out / 'comparison.png')}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="evaluations side by side: table, paired statistics of the best two, verdict, plot",
        description=(
            "Put `arcsub evaluate` results side by side. The best two by Kaggle score on the tasks all "
            "share are tested against each other task by task (paired bootstrap and sign test)."
        ),
    )
    p.add_argument(
        "results", nargs="+", metavar="RESULTS", help="evaluation.json files or the folders `arcsub evaluate` wrote"
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, help=f"where comparison.json/.md and the plot go (default {DEFAULT_OUT})"
    )
    p.add_argument("--plot", metavar="FILE.png", help="score against cost per task (default OUT/comparison.png)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of tasks (default 10000)")
    p.set_defaults(func=cmd_compare)
