"""The shipped default against a candidate pre-training adapter, at equal budget per task,
on the held-out slice drawn before any run (bench/heldout-40.json): docs/results.md.

The candidate adapter (``arcsub finetune``'s ``adapter/``, trained on ``default-chat``)
is merged into the chat model as the shipped one is. Both evaluations run at the same
time, one worker each, so that both see the same machine (whatever else runs on it),
each pinned to its own share of the cores: a one-worker kernel binds its engine's
threads to every core it may use, and two such kernels on the same cores slowed each
other down fifteen-fold (a 40-task run where every task fell back; docs/results.md).
Then ``arcsub compare`` tests them task by task (sign test, paired bootstrap).
Resumable: each evaluation keeps its folder under ``--out``.

    .venv/bin/python bench/default_comparison.py runs/pretrain-2026-12-03/run/adapter --budget-per-task 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from arcsub.models import resolve_model
from arcsub.models.pretrained import merge_adapter

ARCSUB = [sys.executable, "-c", "import sys; from arcsub.cli import main; sys.exit(main())"]


def candidate_model(adapter: Path, folder: Path) -> Path:
    """``default-chat`` with the candidate adapter merged in (once)."""
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        merge_adapter(resolve_model("default-chat"), adapter, tmp)
        tmp.rename(folder)
    return folder


def core_shares(count: int) -> list[set[int]]:
    """This process's cores split into ``count`` equal shares (the last one short if
    they do not divide); refused when there are fewer cores than evaluations."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < count:
        sys.exit(f"{count} evaluations need a core each; this process may use {len(cores)}")
    share = len(cores) // count
    return [set(cores[i * share : (i + 1) * share]) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path, help="the candidate's adapter/ folder")
    parser.add_argument("--slice", type=Path, default=Path(__file__).parent / "heldout-40.json")
    parser.add_argument("--budget-per-task", type=float, default=120.0)
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--out", type=Path, default=Path("runs/default-comparison"))
    args = parser.parse_args()

    selector = json.loads(args.slice.read_text())["selector"]
    models = {"shipped": "default", "candidate": str(candidate_model(args.adapter, args.out / "candidate-model"))}
    runs = {}
    for (name, model), cores in zip(models.items(), core_shares(len(models))):
        pin = ["taskset", "-c", ",".join(map(str, sorted(cores)))]
        command = [*pin, *ARCSUB, "evaluate", "--model", model, "--data", selector, "--config", args.config,
                   "--budget-per-task", f"{args.budget_per_task:g}", "--workers", "1", "--no-progress",
                   "--out", str(args.out / name)]  # fmt: skip
        log = open(args.out / f"{name}.log", "a")  # noqa: SIM115 (open while the run lasts)
        runs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
        shown = " ".join(command[len(pin) + 3 :])
        print(f"{name} on core(s) {pin[-1]}: {shown} (log {args.out / f'{name}.log'})", flush=True)
    failed = [name for name, (process, log) in runs.items() if process.wait() != 0 or log.close()]
    if failed:
        sys.exit(f"evaluation failed: {', '.join(failed)} (see their logs)")
    compare = [*ARCSUB, "compare", *(str(args.out / name) for name in models), "--out", str(args.out / "compare")]
    sys.exit(subprocess.run(compare, check=False).returncode)


if __name__ == "__main__":
    main()
