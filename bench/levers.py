"""Accuracy levers, one ``arcsub evaluate`` each on the same held-out slice and budget.

Each variant is the base config with some settings changed (``section.key=value``, the
value read as TOML); ``baseline`` changes nothing. Resumable: each variant keeps its
folder under ``--out``.

    .venv/bin/python bench/levers.py --smallest 24 --budget-per-task 60 \\
        --variant learn_outputs:finetune.learn_outputs=true \\
        --variant 16_predictions:inference.num_augmentations=16

Prints markdown rows (setting, score on the slice, time per task); record them with the
slice, machine and date in docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
import tomllib
from pathlib import Path

from arcsub.config import config_to_toml, load_config
from arcsub.evaluate.run import EvaluationOptions, evaluate
from arcsub.models import resolve_model


def split_changes(text: str) -> list[str]:
    """``a.b=1,c.d=["x","y"]`` as its changes: commas split only before the next
    ``section.key=``, so TOML arrays keep theirs."""
    return [part for part in re.split(r",(?=\s*\w+\.\w+\s*=)", text) if part]


def variant_config(base: Path, changes: list[str], path: Path) -> Path:
    """``base`` with ``section.key=value`` changes (values as TOML), written to ``path``;
    a bad setting fails here, as the config's own checks say, not in the kernel."""
    config = load_config(base)
    by_section: dict[str, dict] = {}
    for change in changes:
        name, _, value = change.partition("=")
        section, _, key = name.partition(".")
        by_section.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
    for section, values in by_section.items():  # together: checks that tie keys see them all
        setattr(config, section, dataclasses.replace(getattr(config, section), **values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_toml(config))
    return path


METRIC_HEADER = (
    "score (solved) | vote_2 | pass_n | accuracy | correct size | TTFT steps/task | predictions/task "
    "| tasks scored | s/task"
)


def metric_cells(total: dict) -> str:
    """An evaluation's overall figures as the cells under ``METRIC_HEADER``."""
    return (
        f"{total['score']:.3f} ({total['solved']}/{total['test_outputs']}) | {total['vote_2']:.3f} "
        f"| {total['pass_n']:.3f} | {total['accuracy']:.3f} | {total['correct_size']:.3f} "
        f"| {total['ttft_steps_per_task']:g} | {total['predictions_per_task']:g} "
        f"| {total.get('tasks_scored', '?')} | {total['seconds_per_task']:g}"
    )


def evaluated_cells(out: Path, model: str, config: Path, args) -> str:
    """One evaluation on the bench's slice and budget: its cells under ``METRIC_HEADER``
    and the run's wall clock."""
    start = time.time()
    evaluation = evaluate(
        EvaluationOptions(
            out=out, model=resolve_model(model), model_name=model, data=args.data, smallest=args.smallest, skip_smallest=args.skip_smallest, config=config,
            per_task_s=args.budget_per_task, workers=args.workers,
        )
    )  # fmt: skip
    return f"{metric_cells(evaluation['overall'])} | {time.time() - start:.0f} s"


def print_table(first_columns: str, rows: list[str]) -> None:
    print(f"| {first_columns} | {METRIC_HEADER} | run |")
    print("|" + "---|" * (first_columns.count("|") + METRIC_HEADER.count("|") + 3))
    for row in rows:
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--smallest", type=int, default=24)
    parser.add_argument("--skip-smallest", type=int, default=0, help="the next --smallest after these K")
    parser.add_argument("--budget-per-task", type=float, default=60.0)
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[], help="NAME:section.key=value[,section.key=value]")
    parser.add_argument("--out", default="runs/levers")
    parser.add_argument("--no-baseline", action="store_true", help="run the variants only (baseline already run)")
    args = parser.parse_args()

    out = Path(args.out)
    variants = [] if args.no_baseline else [("baseline", [])]
    variants += [(spec.partition(":")[0], split_changes(spec.partition(":")[2])) for spec in args.variant]
    # every config first: a bad setting in the last variant fails before hours of runs
    configs = [
        variant_config(Path(args.config), changes, out / "configs" / f"{name}.toml") for name, changes in variants
    ]
    rows = []
    for (name, changes), config in zip(variants, configs, strict=True):
        setting = ", ".join(changes) or f"{args.config} as it is"
        rows.append(f"| {name} | {setting} | {evaluated_cells(out / name, args.model, config, args)} |")
    after = f" after the {args.skip_smallest} smallest" if args.skip_smallest else ""
    print(f"# {args.model} on {args.data}, {args.smallest} smallest{after}, {args.budget_per_task:g} s per task")
    print_table("lever | setting", rows)


if __name__ == "__main__":
    main()
