"""The 2×2 table of docs/results.md: {as shipped, pre-trained} × {no TTFT, TTFT}.

Four ``arcsub evaluate`` runs of the kernel on the same held-out slice with the same
seconds per task: ``default-chat`` (the chat model as its makers shipped it) and
``default`` (pre-trained on arc1/training by scripts/pretrain-default.sh), each with the
kernel's test-time fine-tuning and without it (``finetune.steps = 0``). Resumable: each
run keeps its folder under ``--out``.

    .venv/bin/python bench/pretraining_table.py --smallest 8 --budget-per-task 90

Prints the markdown rows; record them with the machine and date in docs/results.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from levers import METRIC_HEADER, metric_cells, variant_config  # bench/ is the script's folder

from arcsub.evaluate.run import EvaluationOptions, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--smallest", type=int, default=8)
    parser.add_argument("--budget-per-task", type=float, default=90.0)
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/pretraining-table")
    args = parser.parse_args()

    out = Path(args.out)
    configs = {
        "TTFT": Path(args.config),
        "no TTFT": variant_config(Path(args.config), ["finetune.steps=0"], out / "no-ttft.toml"),
    }
    rows = []
    for model, label in (("default-chat", "as shipped (default-chat)"), ("default", "pre-trained (default)")):
        for ttft, config in configs.items():
            start = time.time()
            evaluation = evaluate(
                EvaluationOptions(
                    out=out / f"{model}-{ttft.replace(' ', '-').lower()}",
                    model=model,
                    data=args.data,
                    smallest=args.smallest,
                    config=config,
                    per_task_s=args.budget_per_task,
                    workers=args.workers,
                )
            )
            rows.append(f"| {label} | {ttft} | {metric_cells(evaluation['overall'])} | {time.time() - start:.0f} s |")
    print(f"# {args.data}, {args.smallest} smallest tasks, {args.budget_per_task:g} s per task, {args.config}")
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, {time.strftime('%Y-%m-%d')}")
    print(f"| model | TTFT | {METRIC_HEADER} | run |")
    print("|---|---|" + "---|" * (METRIC_HEADER.count("|") + 2))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
