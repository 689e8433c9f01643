"""The shipped default against a candidate pre-training adapter, at equal budget per task,
on the held-out slice drawn before any run (bench/heldout-40.json): docs/results.md.

The candidate adapter (``arcsub finetune``'s ``adapter/``, trained on ``default-chat``)
is merged into the chat model as the shipped one is. Both evaluations run at the same
time, one worker each, so that both see the same machine (whatever else runs on it);
then ``arcsub compare`` tests them task by task (sign test, paired bootstrap). Resumable:
each evaluation keeps its folder under ``--out``.

    .venv/bin/python bench/default_comparison.py runs/pretrain-2026-12-03/run/adapter
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path, help="the candidate's adapter/ folder")
    parser.add_argument("--slice", type=Path, default=Path(__file__).parent / "heldout-40.json")
    parser.add_argument("--budget-per-task", type=float, default=60.0)
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--out", type=Path, default=Path("runs/default-comparison"))
    args = parser.parse_args()

    selector = json.loads(args.slice.read_text())["selector"]
    models = {"shipped": "default", "candidate": str(candidate_model(args.adapter, args.out / "candidate-model"))}
    runs = {}
    for name, model in models.items():
        command = [*ARCSUB, "evaluate", "--model", model, "--data", selector, "--config", args.config,
                   "--budget-per-task", f"{args.budget_per_task:g}", "--workers", "1", "--no-progress",
                   "--out", str(args.out / name)]  # fmt: skip
        log = open(args.out / f"{name}.log", "a")  # noqa: SIM115 (open while the run lasts)
        runs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"{name}: {' '.join(command[3:])} (log {args.out / f'{name}.log'})", flush=True)
    failed = [name for name, (process, log) in runs.items() if process.wait() != 0 or log.close()]
    if failed:
        sys.exit(f"evaluation failed: {', '.join(failed)} (see their logs)")
    compare = [*ARCSUB, "compare", *(str(args.out / name) for name in models), "--out", str(args.out / "compare")]
    sys.exit(subprocess.run(compare, check=False).returncode)


if __name__ == "__main__":
    main()
