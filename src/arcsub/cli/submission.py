"""``arcsub validate-submission``, ``score``, ``render`` and ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ArcsubError, SubmissionError
from .common import SOURCE_HELP


def cmd_validate_submission(args) -> int:
    from ..submission import load_submission, validate_submission
    from ..tasks import load_tasks

    submission = load_submission(args.submission)
    tasks = load_tasks(args.challenges).tasks
    problems = validate_submission(submission, tasks)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise SubmissionError(f"{args.submission}: {len(problems)} problem(s)\n  " + "\n  ".join(shown))
    print(f"{args.submission}: valid for {len(tasks)} task(s), {sum(len(t.test) for t in tasks)} test input(s)")
    return 0


def cmd_score(args) -> int:
    from ..selection import load_predictions
    from ..submission import load_solution_tasks, load_submission, prediction_metrics, score_submission

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

    from ..render import render_task
    from ..submission import load_submission
    from ..tasks import load_tasks

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


def cmd_demo(args) -> int:
    from ..demo import format_result, run_demo

    print(format_result(run_demo(args.data, args.out, render=args.render)))
    return 0


def register(sub) -> None:
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
    p.add_argument("task", help=SOURCE_HELP)
    p.add_argument("--solutions", help="solutions JSON matching the challenges")
    p.add_argument("--task", dest="task_id", help="task id, when the source holds several")
    p.add_argument("--submission", help="submission.json whose attempts to draw")
    p.add_argument("-o", "--output", required=True, help="PNG path, or a folder for several tasks")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="rule-based predictions -> submission -> score -> pictures")
    p.add_argument("--data", default="arc1/training", help="task source with solutions")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--render", type=int, default=3, help="tasks to draw")
    p.set_defaults(func=cmd_demo)
