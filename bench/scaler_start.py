"""How many TTFT steps the fp16 gradient scaler skips before it finds its scale, by
start scale: the T4's training path (fp16 base weights, fp16 autocast, GradScaler),
forced on whatever device runs this (CPU here; a CUDA card where one is lent).

    .venv/bin/python bench/scaler_start.py --task 66e6c45b --steps 8 --scales 65536 1024

Prints one row per start scale: the steps asked, the skipped (and retried) steps, the
final loss and the seconds. Record them with the device in docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from arcsub.config import load_config
from arcsub.finetune import load_for_training, train_task
from arcsub.models import resolve_model
from arcsub.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--task", default="66e6c45b")
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--scales", type=float, nargs="+", default=[65536.0, 1024.0])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    task = load_tasks(f"{args.data}[{args.task}]").tasks[0]
    base = load_config(args.config)
    print("| start scale | steps | scaler skips | final loss | s |")
    print("|---|---|---|---|---|")
    for scale in args.scales:
        finetune = dataclasses.replace(base.finetune, precision="fp16", scaler_init_scale=scale, steps=args.steps)
        config = dataclasses.replace(base, finetune=finetune)
        model, tokenizer = load_for_training(resolve_model(args.model), config, device=args.device)
        started = time.time()
        result = train_task(model, tokenizer, task, config, max_steps=args.steps, progress=False)
        loss = f"{result.losses[-1]:.3f}" if result.losses else "-"
        print(f"| {scale:g} | {result.steps} | {result.scaler_skips} | {loss} | {time.time() - started:.0f} |")


if __name__ == "__main__":
    main()
