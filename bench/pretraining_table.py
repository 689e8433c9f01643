"""The 2×2 table of docs/results.md: {as shipped, pre-trained} × {no TTFT, TTFT}.

Four ``arcsub evaluate`` runs of the kernel on the same held-out slice with the same
seconds per task: ``default-chat`` (the chat model as its makers shipped it) and
``default`` (pre-trained on arc1/training by scripts/pretrain-default.sh), each with the
kernel's test-time fine-tuning and without it (``kernel.max_steps = 0``). Resumable: each
run keeps its folder under ``--out``.

    .venv/bin/python bench/pretraining_table.py --smallest 8 --budget-per-task 90

Prints the markdown rows; record them with the machine and date in docs/results.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from levers import evaluated_cells, print_table, variant_config  # bench/ is the script's folder


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
        "no TTFT": variant_config(Path(args.config), ["kernel.max_steps=0"], out / "no-ttft.toml"),
    }
    rows = []
    for model, label in (("default-chat", "as shipped (default-chat)"), ("default", "pre-trained (default)")):
        for ttft, config in configs.items():
            folder = out / f"{model}-{ttft.replace(' ', '-').lower()}"
            rows.append(f"| {label} | {ttft} | {evaluated_cells(folder, model, config, args)} |")
    print(f"# {args.data}, {args.smallest} smallest tasks, {args.budget_per_task:g} s per task, {args.config}")
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, {time.strftime('%Y-%m-%d')}")
    print_table("model | TTFT", rows)


if __name__ == "__main__":
    main()
