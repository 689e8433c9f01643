"""The default's ARC pre-training: the shipped recipe, and one sized by the machine.

    scripts/pretrain-default.sh [--recipe sized|shipped] [--minutes 60] [--device cpu|cuda]
                                [--out runs/pretrain-default] [--dry-run] [--pack]

Two recipes. ``shipped`` reproduces the adapter the package ships
(src/arcsub/models/pretrained/): a fixed ``SHIPPED_STEPS`` steps on arc1/training, the
evaluation sets excluded, not sized by the clock; on this CPU it retraces the shipped
run's losses. ``sized`` (the default) is the larger recipe below, sized by the machine:
its adapter tied with the shipped one at equal budget (docs/results.md) and is not shipped.

1. A short calibration run (``OUT/calibration``) measures the seconds a step takes on
   this device with the recipe's data and settings.
2. The run (``OUT/run``) gets the steps the time budget buys at that rate (a tenth kept
   for the validation losses and checkpoints), so its learning-rate schedule ends where
   the budget does; ``--time-limit`` stops it anyway at the budget. ``OUT/recipe.json``
   records the plan: running the script again resumes the run from its last checkpoint.
3. ``--pack`` makes the run's adapter the shipped default (only after it has won the
   held-out comparison in docs/results.md).

The data: arc1/training and arc2/training with their test outputs, each task id once
(arc2/training repeats 391 of arc1/training's tasks), minus every task of arc1/evaluation
and arc2/evaluation and every copy of one under another id (``--exclude``; the adapter's
``arcsub-training.json`` records the proof per evaluation set). The weights make every
task equally likely. On ``cpu`` the run is niced and takes one prompt per step; on
``cuda`` (precision from the card: bf16 where native, fp16 with the gradient scaler on a
T4) steps carry packed prompts up to ``CUDA_TOKENS_PER_STEP`` tokens.

Standard library only: it drives ``arcsub finetune`` as a user would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

MODEL = "default-chat"
# Each task equally likely: arc2/training keeps 233 tasks after the exclusions, arc1/training 399.
DATA = ["arc1/training", "arc2/training@0.584"]
EXCLUDE = ["arc1/evaluation", "arc2/evaluation"]
RANK = 16  # the largest rank whose fp16 adapter stays under 10 MB (r=8: 4.9 MB); RECIPE.md says why
LEARNING_RATE = 3e-4
VARIANTS = 8  # augmented prompts per task, tokenized once into the datasets cache
VAL_TASKS = 20  # held out of the training sources for the loss curve
MAX_SEQ_LEN = {"cpu": 2048, "cuda": 4096}  # cpu: 18 of 632 tasks have no prompt that fits; cuda: none
CUDA_TOKENS_PER_STEP = 8192
# The shipped adapter's recipe (its RECIPE.md): one prompt per step on arc1/training, fixed steps.
SHIPPED_DATA = ["arc1/training"]
SHIPPED_RANK = 8
SHIPPED_STEPS = 300
SHIPPED_MAX_SEQ_LEN = 1024
CALIBRATION_STEPS = 12
KEEP_FOR_OVERHEAD = 0.1  # of the budget: validation losses, checkpoints, the final save
RECIPE_FILE = "recipe.json"
ARCSUB = [sys.executable, "-c", "import sys; from arcsub.cli import main; sys.exit(main())"]  # the venv's arcsub


class RecipeError(Exception):
    """A one-line reason the recipe cannot go on."""


def data_flags(data: list[str]) -> list[str]:
    """The model, the training sources and the evaluation sets excluded from them."""
    flags = ["--model", MODEL]
    for source in data:
        flags += ["--data", source]
    for source in EXCLUDE:
        flags += ["--exclude", source]
    return flags


def finetune_command(
    device: str, out: Path, steps: int, *, minutes: float | None, resume: bool, calibration: bool = False
) -> list[str]:
    """The ``arcsub finetune`` command of one run of the recipe on ``device``. The
    calibration run trains the same prompts at the same lengths, drawn on the fly (no
    cache to build) and without the validation loss, so that its seconds are steps'."""
    command = [*ARCSUB, "finetune", "--out", str(out), "--steps", str(steps), "--no-progress"]
    if minutes is not None:
        command += ["--time-limit", f"{minutes:g}"]
    if resume:
        return command + ["--resume"]
    command += data_flags(DATA)
    command += [
        "--use-test-outputs", "--rank", str(RANK), "--lr", f"{LEARNING_RATE:g}", "--max-seq-len",
        str(MAX_SEQ_LEN[device]), "--checkpoint-every", "50",
    ]  # fmt: skip
    if not calibration:
        command += ["--variants", str(VARIANTS), "--val-tasks", str(VAL_TASKS), "--eval-every", "100"]
    if device == "cuda":
        command += ["--config", str(out.parent / "cuda.toml")]
    return command


def shipped_command(out: Path, *, resume: bool) -> list[str]:
    """The ``arcsub finetune`` command of the shipped adapter. ``--exclude`` changes no
    trained prompt (the one arc1/training copy of an evaluation task, 40853293, has no
    prompt within 1024 tokens) but makes the manifest prove every evaluation set excluded."""
    command = [*ARCSUB, "finetune", "--out", str(out), "--steps", str(SHIPPED_STEPS), "--no-progress"]
    if resume:
        return command + ["--resume"]
    return command + data_flags(SHIPPED_DATA) + [
        "--rank", str(SHIPPED_RANK), "--lr", f"{LEARNING_RATE:g}", "--max-seq-len", str(SHIPPED_MAX_SEQ_LEN),
        "--checkpoint-every", "50",
    ]  # fmt: skip


def cuda_config() -> str:
    """The settings the CLI has no flag for: packed steps on a GPU."""
    return f'[finetune]\ntokens_per_step = {CUDA_TOKENS_PER_STEP}\npacking = "packed"\n'


def device_environment(device: str) -> dict[str, str]:
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a GPU on the machine is not used by the cpu recipe
    return env


NICE = 10  # on cpu: the run shares the machine with other work


def wrapped(device: str, command: list[str], nice: int = NICE) -> list[str]:
    """On cpu the run shares the machine: niced (the calibration too, so that its rate is the run's)."""
    return ["nice", "-n", str(nice), *command] if device == "cpu" and nice else command


def steps_for_budget(minutes: float, seconds_per_step: float) -> int:
    if not (seconds_per_step > 0 and math.isfinite(seconds_per_step)):
        raise RecipeError(f"calibration measured {seconds_per_step} s per step; rerun it (rm -r OUT/calibration)")
    return max(1, int(minutes * 60 * (1 - KEEP_FOR_OVERHEAD) / seconds_per_step))


def measured_seconds_per_step(calibration: Path) -> float:
    """Seconds per step of the calibration run (its first step's warm-up included: the
    plan errs towards fewer steps)."""
    path = calibration / "adapter" / "train_result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: unreadable ({exc}); rerun the calibration (rm -r {calibration})") from None
    return result["seconds"] / max(1, result["steps"])


def check_device(device: str) -> None:
    if device != "cuda":
        return
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    if subprocess.run([sys.executable, "-c", probe], check=False).returncode != 0:
        raise RecipeError("--device cuda: torch sees no CUDA device here; use --device cpu")


def run(command: list[str], device: str, dry_run: bool, *, nice: int = NICE) -> None:
    command = wrapped(device, command, nice)
    shown = shlex.join(command)
    print(f"recipe| {shown}", flush=True)
    if dry_run:
        return
    done = subprocess.run(command, check=False, env=device_environment(device))
    if done.returncode != 0:
        raise RecipeError(f"exit {done.returncode}: {shown}")


def existing_plan(plan_path: Path, recipe: str, device: str) -> dict | None:
    """The plan an earlier run of ``recipe`` left (None for a new run); refused when it
    belongs to the other recipe or to another device."""
    if not plan_path.is_file():
        return None
    plan = json.loads(plan_path.read_text())
    found = plan.get("recipe", "sized")  # plans from before --recipe are the sized recipe's
    if found != recipe:
        raise RecipeError(f"{plan_path}: holds the {found} recipe's run; give the {recipe} one another --out")
    if plan["device"] != device:
        raise RecipeError(f"{plan_path}: planned for {plan['device']}; resume with --device {plan['device']}")
    return plan


def pretrain(out: Path, minutes: float, device: str, *, nice: int = NICE, dry_run: bool = False) -> dict:
    """Calibrate (once), plan and run (or resume) the recipe in ``out``; returns the plan."""
    plan_path = out / RECIPE_FILE
    plan = existing_plan(plan_path, "sized", device)
    if plan is not None:
        print(f"recipe| resuming: {plan['steps']} steps planned ({plan['seconds_per_step']:.2f} s each)", flush=True)
        run(
            finetune_command(device, out / "run", plan["steps"], minutes=minutes, resume=True),
            device,
            dry_run,
            nice=nice,
        )
        return plan
    if not dry_run:
        check_device(device)
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        if device == "cuda":
            (out / "cuda.toml").write_text(cuda_config())
    calibration = out / "calibration"
    if not (calibration / "adapter" / "train_result.json").is_file():
        command = finetune_command(device, calibration, CALIBRATION_STEPS, minutes=None, resume=False, calibration=True)
        run(command, device, dry_run, nice=nice)
    if dry_run:
        plan = {"device": device, "minutes": minutes, "seconds_per_step": None, "steps": None}
        print(f"recipe| then: {shlex.join(finetune_command(device, out / 'run', 0, minutes=minutes, resume=False))}")
        return plan
    seconds_per_step = measured_seconds_per_step(calibration)
    steps = steps_for_budget(minutes, seconds_per_step)
    plan = {"recipe": "sized", "device": device, "minutes": minutes, "seconds_per_step": seconds_per_step,
            "steps": steps}  # fmt: skip
    plan_path.write_text(json.dumps(plan, indent=1) + "\n")
    print(f"recipe| {seconds_per_step:.2f} s per step on {device}: {steps} steps in {minutes:g} min", flush=True)
    run(finetune_command(device, out / "run", steps, minutes=minutes, resume=False), device, dry_run, nice=nice)
    return plan


def has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(p.name.startswith("step-") for p in folder.iterdir())


def pretrain_shipped(out: Path, device: str, *, nice: int = NICE, dry_run: bool = False) -> dict:
    """Run (or resume from its last checkpoint) the shipped adapter's recipe in ``out``."""
    plan_path = out / RECIPE_FILE
    existing_plan(plan_path, "shipped", device)
    plan = {"recipe": "shipped", "device": device, "steps": SHIPPED_STEPS}
    if not dry_run:
        check_device(device)
        out.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(json.dumps(plan, indent=1) + "\n")
    resume = has_checkpoint(out / "run")
    if resume:
        print(f"recipe| resuming the shipped recipe ({SHIPPED_STEPS} steps) from its last checkpoint", flush=True)
    run(shipped_command(out / "run", resume=resume), device, dry_run, nice=nice)
    return plan


# Why each recipe's rank, for RECIPE.md (docs/results.md holds the comparisons).
RANK_WHY = {
    "shipped": (
        f"LoRA r={SHIPPED_RANK} (4.9 MB in fp16): the sized recipe's r={RANK}, the largest under the 10 MB cap, "
        "trained on more data, tied with it at 120 s and at 300 s per task on 40 held-out tasks, so the "
        "smaller adapter stays."
    ),
    "sized": f"LoRA r={RANK}: the largest rank whose fp16 adapter stays under the 10 MB cap (r=8: 4.9 MB).",
}


def recipe_note(argv: list[str], out: Path, recipe: str, device: str = "cpu") -> str:
    """RECIPE.md of a packed adapter: the command that made it, why its rank, and what
    the run measured, where and when."""
    lines = ["# How this adapter was made", "", "```", shlex.join(["scripts/pretrain-default.sh", *argv]), "```", ""]
    lines += [RANK_WHY[recipe], ""]
    result_path = out / "run" / "adapter" / "train_result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        finished = time.strftime("%Y-%m-%d", time.gmtime(result_path.stat().st_mtime))
        losses = result.get("losses") or []
        head, tail = losses[:50], losses[-50:]
        figures = (
            f"The `{recipe}` recipe of scripts/pretrain_default.py, on {device} ({os.cpu_count()} CPU cores), "
            f"finished {finished}: {result['steps']} steps, {result['tokens']} tokens in {result['seconds']:.0f} s "
            f"({result['precision']}); mean loss {sum(head) / max(1, len(head)):.2f} over the first {len(head)} "
            f"steps, {sum(tail) / max(1, len(tail)):.2f} over the last {len(tail)}."
        )
        proof = "What it was trained on, and the proof that every evaluation set was excluded: arcsub-training.json."
        lines += [figures, proof, ""]
    return "\n".join(lines)


def pack(argv: list[str], out: Path, recipe: str, device: str, dry_run: bool) -> None:
    note = out / "RECIPE.md"
    if not dry_run:
        note.write_text(recipe_note(argv, out, recipe, device))
    command = [*ARCSUB, "model", "pack-default", str(out / "run" / "adapter"), "--recipe", str(note)]
    run(command, device, dry_run, nice=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipe", choices=("sized", "shipped"), default="sized",
        help="sized: the larger recipe sized to --minutes (default); shipped: reproduce the shipped adapter",
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, help="sized: the run's time budget (default 60)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="runs/pretrain-default")
    parser.add_argument(
        "--nice", type=int, default=NICE, help=f"cpu: the niceness of the runs (default {NICE}; 0: not niced)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--pack", action="store_true", help="then make the run's adapter the shipped default")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.recipe == "shipped" and args.minutes is not None:
        parser.error("--minutes: the shipped recipe runs its fixed steps; drop --minutes or use --recipe sized")
    minutes = 60.0 if args.minutes is None else args.minutes
    if not minutes > 0:
        parser.error(f"--minutes {minutes}: give a positive time budget")
    out = Path(args.out)
    try:
        if args.recipe == "shipped":
            pretrain_shipped(out, args.device, nice=args.nice, dry_run=args.dry_run)
        else:
            pretrain(out, minutes, args.device, nice=args.nice, dry_run=args.dry_run)
        if args.pack:
            pack(argv, out, args.recipe, args.device, args.dry_run)
    except RecipeError as exc:
        print(f"recipe| error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
