"""How well the kernel's plan priced inference in recorded evaluations.

    .venv/bin/python bench/plan_accuracy.py runs/default-comparison/shipped runs/default-comparison/candidate

For each evaluation folder (``arcsub evaluate --out``), from the kernel's per-task
results: the tasks the plan gave no TTFT step, and for the tasks whose inference the
deadline did not cut, the seconds the plan reserved for inference over the seconds it
took (median; how many over twice; how many under). A plan that prices inference high
takes its time from test-time fine-tuning (docs/results.md, issue 22). Reads files
only; runs in a second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from arcsub.kernel import results_dir

RESULTS = results_dir(Path("kaggle") / "working")  # under an `arcsub evaluate --out` folder


def task_stats(folder: Path) -> list[dict]:
    files = sorted((folder / RESULTS).glob("*.json"))
    if not files:
        raise SystemExit(f"{folder}: no per-task results under {RESULTS}; pass an `arcsub evaluate --out` folder")
    return [json.loads(path.read_text())["stats"] for path in files]


def accuracy(stats: list[dict]) -> dict:
    planned = [s for s in stats if s.get("plan")]
    ratios = [s["plan"]["infer_s"] / s["infer_s"] for s in planned if not s.get("cut") and s.get("infer_s", 0) > 0]
    return {
        "tasks": len(stats),
        "no_ttft_planned": sum(s["plan"]["steps"] == 0 for s in planned),
        "uncut": len(ratios),
        "median_planned_over_actual": statistics.median(ratios) if ratios else None,
        "over_twice": sum(r > 2 for r in ratios),
        "under": sum(r < 1 for r in ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="arcsub evaluate --out folders")
    args = parser.parse_args(argv)
    rows = [(folder, accuracy(task_stats(folder))) for folder in args.folders]
    print("| evaluation | tasks | no TTFT planned | not cut | planned/actual inference (median) | over 2x | under |")
    print("|---|---|---|---|---|---|---|")
    for folder, row in rows:
        median = row["median_planned_over_actual"]
        shown = f"{median:.2f}" if median is not None else "-"
        print(
            f"| {folder} | {row['tasks']} | {row['no_ttft_planned']} | {row['uncut']} | {shown} "
            f"| {row['over_twice']} | {row['under']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
