"""The ``arcsub`` command: parse arguments, call the library, print. Nothing else.

User errors (``ArcsubError``) print as ``arcsub: error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from . import __version__
from .errors import ArcsubError, SubmissionError

# ---------------------------------------------------------------- data


def cmd_data_stats(args) -> int:
    from .tasks import grid_shape, load_tasks

    taskset = load_tasks(args.source, solutions=args.solutions, skip_invalid=args.skip_invalid)
    tasks = taskset.tasks
    sides = [
        max(grid_shape(g)) for t in tasks for p in (*t.train, *t.test) for g in (p.input, p.output) if g is not None
    ]
    cells = [
        sum(len(g) * len(g[0]) for p in (*t.train, *t.test) for g in (p.input, p.output) if g is not None)
        for t in tasks
    ]
    stats = {
        "source": args.source,
        "tasks": len(tasks),
        "invalid": len(taskset.invalid),
        "train_pairs": sum(len(t.train) for t in tasks),
        "test_inputs": sum(len(t.test) for t in tasks),
        "with_solutions": sum(t.has_solutions for t in tasks),
        "largest_side": max(sides, default=0),
        "median_cells_per_task": statistics.median(cells) if cells else 0,
        "max_cells_per_task": max(cells, default=0),
    }
    print(json.dumps(stats, indent=1) if args.json else "\n".join(f"{k:>22}  {v}" for k, v in stats.items()))
    return 0


def cmd_data_validate(args) -> int:
    from .tasks import load_tasks

    taskset = load_tasks(args.source, solutions=args.solutions, skip_invalid=args.skip_invalid)
    for problem in taskset.invalid:
        print(f"skipped: {problem}", file=sys.stderr)
    tests = sum(len(t.test) for t in taskset)
    print(f"{args.source}: {len(taskset)} valid task(s), {tests} test input(s), {len(taskset.invalid)} skipped")
    return 0


def cmd_data_show(args) -> int:
    from .encoding import get_codec
    from .tasks import load_tasks

    codec = get_codec(args.encoder)
    tasks = load_tasks(args.source, solutions=args.solutions).tasks
    for task in tasks[: args.limit]:
        print(f"== task {task.id}: {len(task.train)} train, {len(task.test)} test")
        for label, pairs in (("train", task.train), ("test", task.test)):
            for i, pair in enumerate(pairs):
                print(f"-- {label} {i} input\n{codec.encode(pair.input)}")
                if pair.output is not None:
                    print(f"-- {label} {i} output\n{codec.encode(pair.output)}")
    return 0


# ---------------------------------------------------------------- prompts


def cmd_encode(args) -> int:
    from .augment import Augmentation
    from .config import PromptConfig
    from .prompts import PromptBuilder

    task = _one_task(args.task, args.task_id)
    tokenizer = None
    if args.tokenizer != "none":
        from .models.loading import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer, progress=_stderr)
    config = PromptConfig(codec=args.encoder, max_seq_len=args.max_seq_len, drop_order=args.drop_order)
    builder = PromptBuilder(config, tokenizer)
    aug = Augmentation.parse(args.augmentation)
    if tokenizer is None:
        prompt = builder.build(task, args.test_index, aug)
    else:
        prompt = builder.fit(task, args.test_index, aug)
    print(prompt.text)
    tokens = "n/a (no tokenizer)" if prompt.num_tokens is None else prompt.num_tokens
    _stderr(
        f"task {task.id} test {args.test_index} aug {prompt.augmentation}: {tokens} tokens, {len(prompt.text)} chars, "
        f"{prompt.num_train} train pairs shown, {prompt.dropped} dropped to fit {config.max_seq_len}"
    )
    return 0


def _one_task(source: str, task_id: str | None):
    from .tasks import load_tasks

    tasks = load_tasks(source).tasks
    if task_id is not None:
        matches = [t for t in tasks if t.id == task_id]
        if not matches:
            raise ArcsubError(f"{source}: no task {task_id}")
        return matches[0]
    if len(tasks) != 1:
        raise ArcsubError(f"{source}: holds {len(tasks)} tasks; pick one with --task ID or a [id] selector")
    return tasks[0]


# ---------------------------------------------------------------- submissions


def cmd_validate_submission(args) -> int:
    from .submission import load_submission, validate_submission
    from .tasks import load_tasks

    submission = load_submission(args.submission)
    tasks = load_tasks(args.challenges).tasks
    problems = validate_submission(submission, tasks)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise SubmissionError(f"{args.submission}: {len(problems)} problem(s)\n  " + "\n  ".join(shown))
    print(f"{args.submission}: valid for {len(tasks)} task(s), {sum(len(t.test) for t in tasks)} test input(s)")
    return 0


def cmd_score(args) -> int:
    from .selection import load_predictions
    from .submission import load_solution_tasks, load_submission, prediction_metrics, score_submission

    tasks = load_solution_tasks(args.solutions, args.challenges)
    submission = load_submission(args.submission)
    result = score_submission(submission, tasks)
    report = {
        "score": result.score,
        "solved": result.solved,
        "total": result.total,
        "solved_tasks": result.solved_tasks,
    }
    if args.predictions:
        report["metrics"] = prediction_metrics(load_predictions(args.predictions), tasks).as_dict()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"score {result.score:.4f}  ({result.solved}/{result.total} test outputs solved)")
        print(f"solved tasks: {', '.join(result.solved_tasks) or 'none'}")
        for key, value in report.get("metrics", {}).items():
            print(f"{key:>14}  {value:.4f}" if isinstance(value, float) else f"{key:>14}  {value}")
    return 0


def cmd_render(args) -> int:
    from tqdm import tqdm

    from .render import render_task
    from .submission import load_submission
    from .tasks import load_tasks

    tasks = load_tasks(args.task, solutions=args.solutions).tasks
    if args.task_id:
        tasks = [t for t in tasks if t.id == args.task_id]
        if not tasks:
            raise ArcsubError(f"{args.task}: no task {args.task_id}")
    submission = load_submission(args.submission) if args.submission else None
    out = Path(args.output)
    many = len(tasks) > 1
    if many and out.suffix.lower() == ".png":
        raise ArcsubError(f"{args.task}: holds {len(tasks)} tasks; give -o a folder, --task ID, or a [id] selector")
    for task in tqdm(tasks, desc="rendering", unit="task", disable=not many):
        attempts = None
        if submission is not None:
            entries = submission.get(task.id)
            if entries is None:
                raise SubmissionError(f"{args.submission}: has no entry for task {task.id}")
            attempts = [(_as_grid(e["attempt_1"]), _as_grid(e["attempt_2"])) for e in entries]
        path = render_task(task, out / f"{task.id}.png" if many else out, attempts)
        if not many:
            print(path)
    if many:
        print(f"{len(tasks)} pictures in {out}")
    return 0


def _as_grid(value):
    return tuple(tuple(row) for row in value)


# ---------------------------------------------------------------- models, demo


def cmd_model_default(args) -> int:
    from .models.default import default_model_dir

    print(default_model_dir(progress=_stderr))
    return 0


def cmd_demo(args) -> int:
    from .demo import format_result, run_demo

    print(format_result(run_demo(args.data, args.out, render=args.render)))
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from .encoding import DEFAULT_CODEC

    parser = argparse.ArgumentParser(prog="arcsub", description="ARC Prize submission kit: tasks, prompts, scoring.")
    parser.add_argument("--version", action="version", version=f"arcsub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def source_args(p, many=True):
        p.add_argument(
            "source" if many else "task", help="challenges/task JSON, folder, or dataset (arc1/evaluation[:10])"
        )
        p.add_argument("--solutions", help="solutions JSON matching the challenges")

    data = sub.add_parser("data", help="inspect and validate task sources").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("stats", help="counts and sizes")
    source_args(p)
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_stats)
    p = data.add_parser("validate", help="check every grid and task; report all problems")
    source_args(p)
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.set_defaults(func=cmd_data_validate)
    p = data.add_parser("show", help="print tasks as text")
    source_args(p)
    p.add_argument("--encoder", default=DEFAULT_CODEC)
    p.add_argument("--limit", type=int, default=1, help="tasks to show (default 1)")
    p.set_defaults(func=cmd_data_show)

    p = sub.add_parser("encode", help="print a task's prompt and its token count")
    p.add_argument("task", help="a source holding one task, e.g. arc1/evaluation[00576224]")
    p.add_argument("--task", dest="task_id", help="task id, when the source holds several")
    p.add_argument("--encoder", default=DEFAULT_CODEC, help="codec spec, e.g. minimal or shape+rownum+fence")
    p.add_argument("--tokenizer", default="default", help="model path, 'default', or 'none' (no token count)")
    p.add_argument("--test-index", type=int, default=0)
    p.add_argument("--augmentation", default="id", help="augmentation key, e.g. rot90.c0318274659")
    p.add_argument("--max-seq-len", type=int, default=8192)
    p.add_argument("--drop-order", default="last", choices=["last", "first", "largest"])
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("validate-submission", help="check a submission.json against its challenges")
    p.add_argument("submission")
    p.add_argument("--challenges", required=True, help="challenges file or dataset")
    p.set_defaults(func=cmd_validate_submission)

    p = sub.add_parser("score", help="score a submission (and per-prediction metrics)")
    p.add_argument("submission")
    p.add_argument("--solutions", required=True, help="solutions file, or a dataset/task file with outputs")
    p.add_argument("--challenges", help="challenges file for a solutions file (default: found beside it)")
    p.add_argument("--predictions", help="predictions.json for accuracy, pass_n, vote_1, vote_2, ...")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("render", help="draw a task (and a submission's attempts) as PNG")
    source_args(p, many=False)
    p.add_argument("--task", dest="task_id", help="task id, when the source holds several")
    p.add_argument("--submission", help="submission.json whose attempts to draw")
    p.add_argument("-o", "--output", required=True, help="PNG path, or a folder for several tasks")
    p.set_defaults(func=cmd_render)

    model = sub.add_parser("model", help="model preparation").add_subparsers(dest="model_command", required=True)
    p = model.add_parser("default", help="convert (once) and print the embedded default model's path")
    p.set_defaults(func=cmd_model_default)

    p = sub.add_parser("demo", help="rule-based predictions -> submission -> score -> pictures")
    p.add_argument("--data", default="arc1/training", help="task source with solutions")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--render", type=int, default=3, help="tasks to draw")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ArcsubError as exc:
        print(f"arcsub: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("arcsub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
