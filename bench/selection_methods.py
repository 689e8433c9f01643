"""Selection methods compared offline on what evaluations already produced.

The kernel keeps every task's step-1 predictions and step-2 scored candidates
(``OUT/kaggle/temp/arcsub/predictions/<task>/``); choosing the 2 attempts again with
another ``inference.selection`` needs no model. Each evaluation folder gives one row per
method: the Kaggle score of the attempts that method picks.

    .venv/bin/python bench/selection_methods.py runs/pretraining-table/default-ttft [more...]

Prints markdown rows; record them with the slice and date in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arcsub.inference import RunStore
from arcsub.inference.attempts import select_attempts
from arcsub.selection import SELECTION_METHODS
from arcsub.submission import make_submission, score_submission
from arcsub.tasks import load_tasks


def rows_for(folder: Path) -> list[str]:
    evaluation = json.loads((folder / "evaluation.json").read_text())
    wanted = set(evaluation["tasks"])
    tasks = [t for t in load_tasks(evaluation["data"]["source"]).tasks if t.id in wanted]
    predictions = folder / "kaggle" / "temp" / "arcsub" / "predictions"
    rows = []
    for method in SELECTION_METHODS:
        attempts = {}
        for task in tasks:
            attempts.update(select_attempts([task], RunStore(predictions / task.id), method).attempts)
        score = score_submission(make_submission(attempts), tasks)
        rows.append(f"| {folder.name} | {method} | {score.score:.3f} ({score.solved}/{score.total}) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path)
    args = parser.parse_args()
    print("| evaluation | selection | score (solved) |")
    print("|---|---|---|")
    for folder in args.evaluations:
        for row in rows_for(folder):
            print(row)


if __name__ == "__main__":
    main()
