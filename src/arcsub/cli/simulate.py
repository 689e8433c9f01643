"""``arcsub simulate``: run a kernel script the way Kaggle would, under real limits."""

from __future__ import annotations

import json
from pathlib import Path

from ..console import show_arcsub_lines


def default_bundle(args) -> Path | None:
    """``--bundle``, else a cpu-target bundle in build/kaggle (what Kaggle would run) built
    from the commit the tree is at, else none (the working tree's kernel and the arcsub
    installed here). A bundle from another commit is passed over with a line: its kernel
    may not read the run request this simulator writes (one built before the request
    existed ran a local-cpu simulation under a T4 profile's 12 hours)."""
    from ..bundle import DEFAULT_BUILD, MANIFEST
    from ..console import say

    if args.bundle:
        return Path(args.bundle)
    if args.no_bundle or args.kernel or args.wheels or not (DEFAULT_BUILD / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((DEFAULT_BUILD / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    target = manifest.get("target")
    if target != "cpu":
        say(f"{DEFAULT_BUILD} holds a {target} bundle, which does not install here: running the working tree")
        return None
    built_from, tree = manifest.get("git_commit"), tree_commit()
    if built_from and tree and built_from != tree:
        say(
            f"{DEFAULT_BUILD} was built from {short(built_from)}, the tree is at {short(tree)}: running the working tree "
            f"(rebuild the bundle, or pass --bundle {DEFAULT_BUILD} to run it as it is)"
        )
        return None
    say(f"using the bundle in {DEFAULT_BUILD} (--no-bundle: run the working tree instead)")
    return DEFAULT_BUILD


def tree_commit() -> str | None:
    """The commit of the checkout arcsub runs from, as a bundle's manifest records it
    (None when it cannot be told: no checkout, no git)."""
    from ..bundle import BuildError, git_commit, repository_root

    try:
        return git_commit(repository_root())
    except BuildError:
        return None


def short(commit: str) -> str:
    """A commit as ``git_commit`` records it, abbreviated, its ``+changes`` mark kept."""
    head, mark, changes = commit.partition("+")
    return head[:12] + mark + changes


def cmd_simulate(args) -> int:
    from ..models import resolve_model
    from ..simulate import SimulationOptions, simulate

    show_arcsub_lines()
    bundle = default_bundle(args)
    # the one resolution of a model name; without --model, a bundle brings its own, else the embedded default
    model = resolve_model(args.model or "default") if args.model or bundle is None else None
    options = SimulationOptions(
        out=Path(args.out),
        kernel=Path(args.kernel) if args.kernel else None,
        data=args.data,
        challenges=args.challenges,
        solutions=args.solutions,
        smallest=args.smallest,
        model=model,
        config=Path(args.config) if args.config else None,
        wheels=Path(args.wheels) if args.wheels else None,
        bundle=bundle,
        competition=args.profile,
        budget_s=args.budget,
        ram_gb=args.ram_gb,
        disk_gb=args.disk_gb,
        workers=args.workers,
        placeholder=args.placeholder,
        kill_worker_after_s=args.kill_worker_after,
        fail_task=args.fail_task,
        nan_loss=args.nan_loss,
        fail_engine=args.fail_engine,
        stall_task=args.stall_task,
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
    p.add_argument(
        "--model", help="model folder for input/arcsub-model, or 'default' (default: the bundle's, else 'default')"
    )
    p.add_argument("--config", help="arcsub TOML config, copied to input/arcsub-model/arcsub.toml")
    p.add_argument("--wheels", help="folder of .whl files for input/arcsub-wheels")
    p.add_argument(
        "--bundle",
        help="a built cpu-target bundle: its kernel, model and wheels, installed offline (default: build/kaggle "
        "when it holds one)",
    )
    p.add_argument(
        "--no-bundle", action="store_true", help="run the working tree even when build/kaggle holds a bundle"
    )
    p.add_argument("--profile", default="local-cpu", help="competition profile (default: local-cpu)")
    p.add_argument("--budget", type=float, help="wall-clock limit in seconds (default: the profile's)")
    p.add_argument("--ram-gb", type=float, help="memory limit of the kernel's processes (default: the profile's)")
    p.add_argument("--disk-gb", type=float, help="size of the working folder (default: the profile's)")
    p.add_argument("--workers", type=int, help="worker processes for the kernel (default: the profile's)")
    p.add_argument(
        "--placeholder",
        action="store_true",
        help="a placeholder run, as Kaggle's first run after a push: the public "
        "evaluation file beside the test file, no KAGGLE_IS_COMPETITION_RERUN (the kernel makes its smoke run)",
    )
    p.add_argument("--kill-worker-after", type=float, metavar="S", help="SIGKILL one kernel worker after S seconds")
    p.add_argument("--fail-task", metavar="ID", help="fault: the kernel fails this task")
    p.add_argument("--nan-loss", metavar="ID", help="fault: NaN loss while training this task")
    p.add_argument(
        "--fail-engine", nargs="?", const="start", metavar="ID",
        help="fault: every vLLM engine fails at its start, or the engine serving task ID fails in "
        "its inference (the workers go on with the transformers backend)",
    )  # fmt: skip
    p.add_argument("--stall-task", metavar="ID", help="fault: the worker hangs after this task's inference")
    p.add_argument("--no-space", action="store_true", help="a nearly full working folder (1 MiB)")
    p.add_argument(
        "--no-namespace", action="store_true", help="run without namespaces (as ARCSUB_SIMULATE_NO_NAMESPACE=1)"
    )
    p.add_argument("--out", required=True, help="output folder (OUT/kaggle, OUT/logs, OUT/simulation.json)")
    p.set_defaults(func=cmd_simulate)
