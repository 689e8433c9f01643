"""``arcsub evaluate``: the kernel's pipeline on tasks with known solutions, at a fixed
budget per task, scored per task and overall."""

from __future__ import annotations

from pathlib import Path

from .common import SOURCE_HELP


def cmd_evaluate(args) -> int:
    from ..console import show_arcsub_lines
    from ..evaluate import EvaluationOptions, evaluate
    from ..models import resolve_model

    show_arcsub_lines()
    evaluate(
        EvaluationOptions(
            out=Path(args.out),
            model=resolve_model(args.model),
            model_name=args.model,
            data=args.data,
            solutions=args.solutions,
            smallest=args.smallest,
            skip_smallest=args.skip_smallest,
            config=Path(args.config) if args.config else None,
            per_task_s=args.budget_per_task,
            budget_competition=args.profile,
            competition=args.machine,
            workers=args.workers,
            allow_overlap=args.allow_overlap,
            restart=args.restart,
        ),
        progress=not args.no_progress,
    )
    return 0


def register(sub) -> None:
    from ..evaluate import DEFAULT_MACHINE, DEFAULT_TASK_S

    p = sub.add_parser(
        "evaluate",
        help="the kernel on tasks with solutions, at equal budget per task: score and metrics (resumable)",
        description=(
            "Runs kernel/main.py (the file Kaggle runs) on tasks with known solutions; the solutions stay "
            "outside the kernel's inputs. Every task gets the same wall clock, given or what a competition "
            "profile's 12 hours give it. Writes OUT/evaluation.json and OUT/evaluation.md; rerunning with the "
            "same OUT resumes from the kernel's per-task results."
        ),
    )
    p.add_argument("--model", default="default", help="model folder or 'default' (default: default)")
    p.add_argument("--data", default="arc1/evaluation", help=SOURCE_HELP + " (default arc1/evaluation)")
    p.add_argument("--solutions", help="Kaggle solutions file for a challenges file given as --data")
    p.add_argument("--smallest", type=int, help="only the N tasks with the fewest cells")
    p.add_argument(
        "--skip-smallest",
        type=int,
        default=0,
        metavar="K",
        help="leave out the K smallest first (with --smallest N: the next N, a slice held out from the first K)",
    )
    p.add_argument("--config", help="TOML config for the kernel (as arcsub.toml beside the model)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-per-task", type=float, help=f"seconds of wall clock per task (default {DEFAULT_TASK_S:g})"
    )
    budget.add_argument(
        "--profile", help="the time per task a competition profile's budget gives (arc-prize-2024, arc-prize-2025)"
    )
    p.add_argument(
        "--machine", default=DEFAULT_MACHINE, help=f"profile the kernel runs under here (default {DEFAULT_MACHINE})"
    )
    p.add_argument("--workers", type=int, help="worker processes (default: the machine profile's)")
    p.add_argument("--out", default="runs/evaluate", help="output folder (default runs/evaluate)")
    p.add_argument("--allow-overlap", action="store_true", help="score even tasks the model was trained on")
    p.add_argument("--restart", action="store_true", help="discard an earlier evaluation in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
