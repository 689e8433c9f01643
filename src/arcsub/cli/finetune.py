"""``arcsub finetune``: offline fine-tuning (one adapter over weighted task sources,
resumable, data parallel under ``accelerate launch``; the ARC pre-training recipe in
docs/finetune.md), or with ``--per-task`` one test-time adapter per task."""

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
    "pairs_per_prompt": "pairs_per_prompt",
    "variants": "variants",
    "val_tasks": "val_tasks",
    "eval_every": "eval_every",
    "exclude": "exclude_sources",
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


def _same_sources(given: list[str] | None, saved: list[str], flag: str, out) -> None:
    """On --resume, --data / --val-data may repeat the run's sources, never change them."""
    from ..finetune import parse_sources

    if given is not None and [str(s) for s in parse_sources(given, flag)] != saved:
        shown = " ".join(f"{flag} {s}" for s in saved) or f"no {flag}"
        raise FinetuneError(f"{out}: was trained with {shown}; resume with those (or none)")


def _fp16_check(progress: bool):
    """The merged model's fp16 check for run_offline (arcsub.checks sits above finetune)."""

    def check(folder: Path, source: str, max_tokens: int) -> dict:
        from ..checks import check_fp16

        report = check_fp16(folder, source=source, max_tokens=max_tokens, prompts=2, progress=progress)
        return dataclasses.asdict(report) | {"overflow": report.overflow, "verdict": report.lines()[-1]}

    return check


def cmd_finetune(args) -> int:
    from ..finetune import read_run, time_limit_deadline

    config = _config(args)
    deadline = time_limit_deadline(args.time_limit)
    model, data, val_data, cache_dir = args.model, args.data, args.val_data, args.cache_dir
    if args.resume:
        run = read_run(Path(args.out))
        if model is not None and model != run["model"]:
            raise FinetuneError(f"{args.out}: was trained with --model {run['model']}; resume with that one")
        saved = config.finetune.sources or run["data"]  # older runs kept the source in run.json only
        _same_sources(data, saved, "--data", args.out)
        _same_sources(val_data, config.finetune.val_sources, "--val-data", args.out)
        model, data, val_data = run["model"], saved, None
        if cache_dir is None and run.get("cache"):  # the same cached dataset, not a copy in the default place
            cache_dir = str(Path(run["cache"]["folder"]).parent)
    model = model or "default"
    if not (data or config.finetune.sources):
        raise FinetuneError("--data is required: a task source such as arc1/training (SOURCE@WEIGHT to mix)")
    from ..models import resolve_model

    model_dir = resolve_model(model)  # the one resolution of the name; below, a folder
    if args.per_task:
        return _per_task(model_dir, data or config.finetune.sources, args, config, deadline)
    from ..finetune import run_offline

    with command_output(args.out, args.verbose):
        result = run_offline(
            model_dir,
            data,
            args.out,
            config,
            val_data=val_data,
            resume=args.resume,
            max_steps=args.steps,
            deadline=deadline,
            skip_invalid=args.skip_invalid,
            progress=not args.no_progress,
            cache_dir=cache_dir,
            fp16_check=_fp16_check(not args.no_progress),
            model_name=model,
        )
    print(result.summary())
    return 0


def _per_task(model, data, args, config, deadline) -> int:
    from ..finetune import load_for_training, train_tasks
    from ..tasks import load_tasks

    if args.resume:
        raise FinetuneError("--per-task runs resume by themselves (done tasks are kept); drop --resume")
    if len(data) > 1 or ("@" in data[0] and not Path(data[0]).exists()):
        raise FinetuneError("--per-task trains on the tasks of one --data source, without a weight; give one")
    config.finetune = dataclasses.replace(config.finetune, adapter_mode="per_task")
    tasks = load_tasks(data[0], skip_invalid=args.skip_invalid).tasks
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
            "Offline fine-tuning on the leave-one-out prompts of the tasks in --data (one or more "
            "sources, mixed by weight), into --out (adapter/, checkpoints/, config.toml, run.json). "
            "For several GPUs (or CPU processes): "
            "accelerate launch --multi_gpu --num_processes N .venv/bin/arcsub finetune ..."
        ),
    )
    p.add_argument("--model", help="model folder or 'default' (default: default)")
    p.add_argument(
        "--data",
        action="append",
        metavar="SOURCE[@WEIGHT]",
        help=f"training tasks: {SOURCE_HELP}; repeat to mix sources, each drawn in proportion to its "
        "weight (default 1) (default: finetune.sources)",
    )
    p.add_argument(
        "--val-data",
        action="append",
        metavar="SOURCE",
        help="held-out tasks for the validation loss (never trained on); repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="SOURCE",
        help="tasks never to train on (e.g. every evaluation set): they and copies of them under other ids "
        "are left out, and the adapter's manifest proves it; repeatable (default: finetune.exclude_sources)",
    )
    p.add_argument(
        "--val-tasks", type=int, metavar="N", help="hold out this many tasks of --data for the validation loss"
    )
    p.add_argument("--eval-every", type=int, metavar="N", help="steps between validation losses (and one at the end)")
    p.add_argument(
        "--pairs-per-prompt", type=int, metavar="N", help="train pairs per prompt, drawn at random (0: all that fit)"
    )
    p.add_argument(
        "--variants",
        type=int,
        metavar="K",
        help="tokenize K augmented prompts per task once into a cached dataset and train from it (0: on the fly)",
    )
    p.add_argument(
        "--cache-dir", metavar="DIR", help="where tokenized datasets are cached (default ~/.cache/arcsub/finetune-data)"
    )
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
    p.add_argument(
        "--merge", action="store_true", help="also save the adapter merged into full weights, checked for fp16"
    )
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose_option(p)
    p.set_defaults(func=cmd_finetune)
