"""``arcsub finetune``: offline fine-tuning (one adapter over a dataset, resumable,
data parallel under ``accelerate launch``), or with ``--per-task`` one test-time
adapter per task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import FINETUNE_METHODS, PRECISIONS
from ..errors import FinetuneError
from .common import SOURCE_HELP, add_verbose_option, command_output

# flag -> finetune config key; these change the run, so --resume refuses them
_TUNING = {
    "lr": "learning_rate",
    "rank": "lora_rank",
    "method": "method",
    "precision": "precision",
    "max_seq_len": "max_seq_len",
    "grad_accum": "grad_accum",
    "checkpoint_every": "checkpoint_every",
}
_SWITCHES = ("use_test_outputs", "merge", "gradient_checkpointing")  # flags that set a finetune key to true


def _config(args):
    from ..config import load_config

    out = Path(args.out)
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _TUNING if getattr(args, k) is not None]
        given += ["--config"] if args.config else []
        given += [f"--{k.replace('_', '-')}" for k in _SWITCHES if getattr(args, k)]
        if given:
            raise FinetuneError(
                f"--resume continues with the run's saved config ({out / 'config.toml'}); "
                f"drop {', '.join(given)} or start a new run in another --out"
            )
        return load_config(out / "config.toml")
    config = load_config(args.config)
    changes = {key: getattr(args, flag) for flag, key in _TUNING.items() if getattr(args, flag) is not None}
    for flag in _SWITCHES:
        if getattr(args, flag):
            changes[flag] = True
    config.finetune = dataclasses.replace(config.finetune, **changes)
    return config


def cmd_finetune(args) -> int:
    from ..finetune.offline import read_run, time_limit_deadline

    config = _config(args)
    deadline = time_limit_deadline(args.time_limit)
    model, data = args.model, args.data
    if args.resume:
        run = read_run(Path(args.out))
        model, data = model or run["model"], data or run["data"]
        if (model, data) != (run["model"], run["data"]):
            raise FinetuneError(
                f"{args.out}: was trained with --model {run['model']} --data {run['data']}; resume with those"
            )
    if data is None:
        raise FinetuneError("--data is required: a task source such as arc1/training")
    model = model or "default"

    if args.per_task:
        return _per_task(model, data, args, config, deadline)
    from ..finetune.offline import run_offline

    with command_output(args.out, args.verbose):
        result = run_offline(
            model,
            data,
            args.out,
            config,
            resume=args.resume,
            max_steps=args.steps,
            deadline=deadline,
            skip_invalid=args.skip_invalid,
            progress=not args.no_progress,
        )
    print(result.summary())
    return 0


def _per_task(model, data, args, config, deadline) -> int:
    from ..finetune import load_for_training, train_tasks
    from ..tasks import load_tasks

    if args.resume:
        raise FinetuneError("--per-task runs resume by themselves (done tasks are kept); drop --resume")
    config.finetune = dataclasses.replace(config.finetune, adapter_mode="per_task")
    tasks = load_tasks(data, skip_invalid=args.skip_invalid).tasks
    with command_output(args.out, args.verbose):
        net, tokenizer = load_for_training(model, config)
        results = train_tasks(
            net, tokenizer, tasks, config, args.out, deadline=deadline, max_steps=args.steps,
            progress=not args.no_progress,
        )  # fmt: skip
    trained = sum(r.stop_reason != "skipped" for r in results.values())
    print(f"{trained}/{len(results)} task adapter(s) in {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on a dataset (LoRA or full; resumable; runs under accelerate launch)",
        description=(
            "Offline fine-tuning on the leave-one-out prompts of every task in --data, into --out "
            "(adapter/, checkpoints/, config.toml). For several GPUs (or CPU processes): "
            "accelerate launch --multi_gpu --num_processes N .venv/bin/arcsub finetune ..."
        ),
    )
    p.add_argument("--model", help="model folder or 'default' (default: default)")
    p.add_argument("--data", help=SOURCE_HELP)
    p.add_argument("--out", default="runs/finetune", help="output folder (default runs/finetune)")
    p.add_argument("--steps", type=int, help="optimizer steps (default finetune.steps; per task with --per-task)")
    p.add_argument("--config", help="TOML config (sections prompt, augment, finetune)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--per-task", action="store_true", help="one adapter per task (test-time fine-tuning)")
    p.add_argument("--time-limit", type=float, help="minutes; stop (with a checkpoint) when they are spent")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--rank", type=int, help="LoRA rank")
    p.add_argument("--method", choices=FINETUNE_METHODS)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--max-seq-len", type=int, help="training sequence budget in tokens")
    p.add_argument("--grad-accum", type=int, help="sequences per optimizer step (per process)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations to save memory")
    p.add_argument("--use-test-outputs", action="store_true", help="train on test pairs with known outputs too")
    p.add_argument("--merge", action="store_true", help="also save the adapter merged into full weights")
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose_option(p)
    p.set_defaults(func=cmd_finetune)
