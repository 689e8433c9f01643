"""Budget use and overrun of the kernel over several budgets, through the simulator.

Each budget is one ``arcsub simulate`` run of ``kernel/main.py`` (namespace mode where
permitted: no network, the budget enforced by a kill) on the same tasks with the same
model and settings. Target (issue 9): at least 90% of the budget used, no overrun.

    .venv/bin/python bench/kernel.py                       # default model, 5 smallest tasks
    .venv/bin/python bench/kernel.py --budgets 240 360 --smallest 3 --config configs/cpu-smoke.toml

Prints a table; record it with the machine and date in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from arcsub.models import resolve_model
from arcsub.simulate import SimulationOptions, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[240.0, 360.0, 480.0])
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--smallest", type=int, default=5)
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-kernel")
    args = parser.parse_args()

    model = resolve_model(args.model)
    rows = []
    for budget in args.budgets:
        out = Path(args.out) / f"budget-{budget:g}"
        report = simulate(
            SimulationOptions(
                out=out,
                data=args.data,
                smallest=args.smallest,
                model=model,
                config=Path(args.config) if args.config else None,
                competition="local-cpu",
                budget_s=budget,
                workers=args.workers,
            ),
            echo=lambda line: None,
        )
        run, kernel = report["run"], report.get("kernel_report") or {}
        elapsed = kernel.get("elapsed_s") or run["elapsed_s"]
        tasks = kernel.get("tasks", {})
        rows.append(
            (
                budget,
                elapsed,
                elapsed / budget,
                "yes" if run["killed"] or elapsed > budget else "no",
                f"{tasks.get('done', 0)}/{tasks.get('total', '?')}",
                (kernel.get("fine_tuning") or {}).get("steps", 0),
                len(kernel.get("faults", [])),
                report["submission"]["valid"],
                (report["submission"].get("score") or {}).get("score"),
            )
        )
    print(f"# kernel budget use, {platform.node()}, {time.strftime('%Y-%m-%d')}, {args.workers} workers, "
          f"{args.smallest} smallest of {args.data}, config {args.config}, model {args.model}")  # fmt: skip
    print("| budget s | elapsed s | used | overrun | tasks by the model | TTFT steps | faults | valid | score |")
    print("|---|---|---|---|---|---|---|---|---|")
    for budget, elapsed, used, overrun, done, steps, faults, valid, score in rows:
        shown = "-" if score is None else f"{score:.2f}"
        print(
            f"| {budget:g} | {elapsed:.0f} | {used:.0%} | {overrun} | {done} | {steps} | {faults} | {valid} | {shown} |"
        )


if __name__ == "__main__":
    main()
