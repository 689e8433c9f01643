"""``arcsub simulate``: run a kernel script the way Kaggle would, under real limits."""

from __future__ import annotations

from pathlib import Path

from ..console import show_arcsub_lines


def cmd_simulate(args) -> int:
    from ..simulate import SimulationOptions, simulate

    show_arcsub_lines()
    options = SimulationOptions(
        out=Path(args.out),
        kernel=Path(args.kernel) if args.kernel else None,
        data=args.data,
        challenges=args.challenges,
        solutions=args.solutions,
        smallest=args.smallest,
        model=args.model,
        config=Path(args.config) if args.config else None,
        wheels=Path(args.wheels) if args.wheels else None,
        profile=args.profile,
        budget_s=args.budget,
        ram_gb=args.ram_gb,
        disk_gb=args.disk_gb,
        workers=args.workers,
        placeholder=args.placeholder,
        kill_worker_after_s=args.kill_worker_after,
        fail_task=args.fail_task,
        nan_loss=args.nan_loss,
        no_space=args.no_space,
        namespace=False if args.no_namespace else None,
    )
    return 0 if simulate(options)["passed"] else 1


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a kernel as Kaggle would (no network, time/RAM/disk limits) and judge its submission",
        description="Build a Kaggle-like tree under OUT/kaggle, run the kernel under the profile's limits, "
        "validate and score the submission.json it leaves. Exit 0: Kaggle would accept the run; 1: it would not "
        "(invalid or missing submission, killed at a limit, non-zero exit); 2: bad options.",
    )
    p.add_argument("--kernel", help="kernel script (default: the repository's kernel/main.py)")
    p.add_argument("--data", help="task source with solutions (default: arc1/evaluation, 5 smallest)")
    p.add_argument("--challenges", help="a Kaggle challenges file instead of --data")
    p.add_argument("--solutions", help="its solutions file (default: found beside it)")
    p.add_argument("--smallest", type=int, help="keep the N smallest tasks (default: all; 5 with the default data)")
    p.add_argument("--model", default="default", help="model folder for input/arcsub-model, or 'default'")
    p.add_argument("--config", help="arcsub TOML config, copied to input/arcsub-model/arcsub.toml")
    p.add_argument("--wheels", help="folder of .whl files for input/arcsub-wheels")
    p.add_argument("--profile", default="local-cpu", help="competition profile (default: local-cpu)")
    p.add_argument("--budget", type=float, help="wall-clock limit in seconds (default: the profile's)")
    p.add_argument("--ram-gb", type=float, help="memory limit of the kernel's processes (default: the profile's)")
    p.add_argument("--disk-gb", type=float, help="size of the working folder (default: the profile's)")
    p.add_argument("--workers", type=int, help="ARCSUB_WORKERS for the kernel")
    p.add_argument("--placeholder", action="store_true", help="a placeholder run (no KAGGLE_IS_COMPETITION_RERUN)")
    p.add_argument("--kill-worker-after", type=float, metavar="S", help="SIGKILL one kernel worker after S seconds")
    p.add_argument("--fail-task", metavar="ID", help="ARCSUB_FAULT_FAIL_TASK: the kernel fails this task")
    p.add_argument("--nan-loss", metavar="ID", help="ARCSUB_FAULT_NAN_LOSS: NaN loss while training this task")
    p.add_argument("--no-space", action="store_true", help="a nearly full working folder (1 MiB)")
    p.add_argument(
        "--no-namespace", action="store_true", help="run without namespaces (as ARCSUB_SIMULATE_NO_NAMESPACE=1)"
    )
    p.add_argument("--out", required=True, help="output folder (OUT/kaggle, OUT/logs, OUT/simulation.json)")
    p.set_defaults(func=cmd_simulate)
