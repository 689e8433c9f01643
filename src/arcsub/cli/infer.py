"""``arcsub infer`` (steps 1 and 2 into a predictions folder), ``arcsub select`` (the
final attempts from that folder, offline) and ``arcsub run`` (the whole path)."""

from __future__ import annotations

import dataclasses

from ..config import BACKENDS, SELECTIONS
from ..console import say
from ..errors import ArcsubError, ConfigError
from .common import SOURCE_HELP, add_verbose_option, command_output


def load_run_config(args):
    """The config file (or defaults) with the command-line overrides applied; the
    result is what the run saves, so every override must be a valid config value."""
    from ..config import load_config

    config = load_config(args.config)
    overrides = {
        name: getattr(args, name)
        for name in ("backend", "num_augmentations", "samples_per_prompt", "temperature", "max_model_len")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "no_scoring", False):
        overrides["scoring"] = False
    # replace() validates the combination again (e.g. --samples 8 needs --temperature > 0)
    config.inference = dataclasses.replace(config.inference, **overrides)
    if getattr(args, "ttft_steps", None) is not None:
        if args.ttft_steps < 0:
            raise ConfigError(f"--ttft-steps {args.ttft_steps}: give 0 (no fine-tuning) or more")
        config.finetune = dataclasses.replace(config.finetune, steps=args.ttft_steps)
    return config


def cmd_infer(args) -> int:
    from ..inference import find_adapters, infer
    from ..models import load_tokenizer, resolve_model
    from ..tasks import load_tasks

    config = load_run_config(args)
    tasks = load_tasks(args.data, skip_invalid=args.skip_invalid).tasks
    model_path = resolve_model(args.model)
    find_adapters(args.adapters, tasks)  # a wrong folder fails here, before OUT/logs is written
    with command_output(args.output, args.verbose):
        report = infer(
            tasks,
            model_path,
            load_tokenizer(model_path),
            config,
            args.output,
            adapters_dir=args.adapters,
            data_label=args.data,
            overwrite=args.overwrite,
        )
    print(f"{args.output}: {report.summary()}")
    return 0


def cmd_select(args) -> int:
    from ..inference import RunStore, write_selected_submission
    from ..submission import score_submission
    from ..tasks import load_tasks

    store = RunStore(args.predictions)
    run = store.read_run()
    source = args.challenges or (run or {}).get("data")
    if not source:
        raise ArcsubError(f"{args.predictions}: no run.json naming the tasks; pass --challenges")
    tasks = load_tasks(source).tasks
    method = args.method or "combined"
    selection, submission = write_selected_submission(tasks, store, args.output, method)
    counts = {s: list(selection.source.values()).count(s) for s in ("score", "sample", "fallback")}
    print(
        f"{args.output}: {len(tasks)} task(s) ({counts['score']} scored, {counts['sample']} voted, "
        f"{counts['fallback']} fallback), selection by {method}"
    )
    if all(t.has_solutions for t in tasks):
        result = score_submission(submission, tasks)
        print(f"score {result.score:.4f} ({result.solved}/{result.total} test outputs solved)")
    return 0


def cmd_run(args) -> int:
    from ..models import resolve_model
    from ..pipeline import run_pipeline
    from ..tasks import load_tasks, smallest_tasks

    config = load_run_config(args)
    tasks = load_tasks(args.data, skip_invalid=args.skip_invalid).tasks
    if args.smallest:
        tasks = smallest_tasks(tasks, args.smallest)
    model_path = resolve_model(args.model)
    if all(t.has_solutions for t in tasks):  # a scored run: its score must not measure memory
        from ..leakage import guard_evaluation

        seen = guard_evaluation(tasks, model_path, allow_overlap=args.allow_overlap)
        if seen:
            say(f"--allow-overlap: {len(seen)} of the {len(tasks)} tasks were in the model's training data")
    shown = ", ".join(t.id for t in tasks[:10]) + (" ..." if len(tasks) > 10 else "")
    say(f"{len(tasks)} task(s) from {args.data}: {shown}")
    with command_output(args.out, args.verbose):
        result = run_pipeline(tasks, model_path, config, args.out, data_label=args.data)
    print(result.summary())
    return 0


def add_inference_options(p) -> None:
    p.add_argument("--config", help="TOML config ([prompt], [augment], [inference], ...)")
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument("--augmentations", dest="num_augmentations", type=int, help="step 1 prompts per test input")
    p.add_argument("--samples", dest="samples_per_prompt", type=int, help="completions per prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--no-scoring", action="store_true", help="skip step 2 (candidate scoring)")
    add_verbose_option(p)


def register(sub) -> None:
    p = sub.add_parser("infer", help="multi-step inference into a predictions folder (resumable)")
    p.add_argument("--model", default="default", help="model folder or 'default'")
    p.add_argument("--adapters", help="folder of per-task LoRA adapters (<dir>/<task_id>/) or one adapter")
    p.add_argument("--data", required=True, help=SOURCE_HELP)
    p.add_argument("-o", "--output", required=True, help="predictions folder")
    p.add_argument("--overwrite", action="store_true", help="discard results made with other settings")
    p.add_argument("--skip-invalid", action="store_true")
    add_inference_options(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("run", help="end to end: fallback, test-time fine-tuning, inference, selection, score")
    p.add_argument("--model", default="default", help="model folder or 'default'")
    p.add_argument("--data", default="arc1/evaluation", help=SOURCE_HELP)
    p.add_argument("--smallest", type=int, help="keep only the N tasks with the fewest cells")
    p.add_argument("--out", default="runs/local", help="output folder (a rerun resumes)")
    p.add_argument("--ttft-steps", type=int, help="test-time fine-tuning steps per task (0: none)")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument(
        "--allow-overlap", action="store_true", help="score the model even on tasks its training manifest lists"
    )
    add_inference_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("select", help="choose the 2 attempts per test input from a predictions folder")
    p.add_argument("predictions", help="folder written by `arcsub infer`")
    p.add_argument("-o", "--output", required=True, help="submission.json to write")
    p.add_argument("--challenges", help="task source (default: the one recorded in run.json)")
    p.add_argument("--method", choices=SELECTIONS, help="default: combined")
    p.set_defaults(func=cmd_select)
