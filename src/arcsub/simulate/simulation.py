"""One simulated Kaggle run: choose tasks, build the tree, run the kernel under the
profile's limits, judge what it left, write ``OUT/simulation.json``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import arcsub

from ..console import say
from ..io import folder_bytes, write_json_atomic
from ..kernel import FAULTS, RUN_REQUEST_FILE, RunRequest
from ..tasks import Task
from .bundle import BundleInputs, bundle_inputs
from .report import failures, final_lines, judge_submission, read_kernel_report
from .runner import (
    NAMESPACE_FLAGS,
    NO_NAMESPACE_ENV,
    RAM_POLL_S,
    SANDBOX_SCRIPT,
    Launch,
    Limits,
    launch_kernel,
    namespace_support,
)
from .tree import Layout, SimulationError, build_tree, clear_out

DEFAULT_SIMULATED_COMPETITION = "local-cpu"
DEFAULT_DATA = "arc1/evaluation"
DEFAULT_SMALLEST = 5  # with the default data only
MOUNTPOINT = Path("/kaggle")
NO_SPACE_BYTES = 1 << 20  # --no-space: room for a small submission, nothing much else
PROXY_VARS = {"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy"}
# Kaggle's own signal, set by the simulator only: never inherited from the caller's
# environment. (The run's competition, budget, workers and faults go in the run request,
# arcsub-run.json, not here.)
KERNEL_VARS = ("KAGGLE_IS_COMPETITION_RERUN",)
ENGINE_START = "start"  # --fail-engine without a task: every vLLM engine start fails


def default_kernel() -> Path:
    """The repository's ``kernel/main.py``."""
    return Path(arcsub.__file__).resolve().parents[2] / "kernel" / "main.py"


@dataclass
class SimulationOptions:
    out: Path
    kernel: Path | None = None  # None: the repository's kernel/main.py
    data: str | None = None  # a task source; None (and no challenges): arc1/evaluation, 5 smallest
    challenges: str | None = None  # a Kaggle challenges file (solutions found beside it, or given)
    solutions: str | None = None
    smallest: int | None = None
    model: Path | None = None  # a model folder (the command line resolves names); None: the bundle's
    config: Path | None = None
    wheels: Path | None = None
    bundle: Path | None = None  # a built cpu-target bundle: its kernel, model, wheels and offline install
    over_image: str | None = None  # with bundle: the kernel's Python is a replica of this image (images/<name>.txt)
    competition: str = DEFAULT_SIMULATED_COMPETITION  # the competition profile whose machine and limits
    budget_s: float | None = None  # None: the profile's
    ram_gb: float | None = None
    disk_gb: float | None = None
    workers: int | None = None
    placeholder: bool = False
    kill_worker_after_s: float | None = None
    fail_task: str | None = None
    nan_loss: str | None = None
    fail_engine: str | None = None  # "start", or a task id: the vLLM engine fails there
    stall_task: str | None = None  # the worker hangs after this task's inference until killed
    no_space: bool = False
    namespace: bool | None = None  # None: when this machine allows it; False: fallback; True: required


def select_tasks(options: SimulationOptions) -> tuple[str, list[Task]]:
    from ..tasks import load_tasks, smallest_tasks

    if options.data and options.challenges:
        raise SimulationError("pass either `data` or `challenges`, not both")
    if options.solutions and not options.challenges:
        raise SimulationError("`solutions` goes with `challenges`; a `data` source carries its own solutions")
    smallest = options.smallest
    if options.challenges:
        source = options.challenges
        tasks = load_tasks(source, solutions=options.solutions).tasks
    else:
        source = options.data or DEFAULT_DATA
        if options.data is None and smallest is None:
            smallest = DEFAULT_SMALLEST
        tasks = load_tasks(source).tasks
    if smallest is not None:
        if smallest < 1:
            raise SimulationError(f"`smallest` {smallest}: pass at least 1")
        tasks = smallest_tasks(tasks, smallest)
        source = f"{source} ({smallest} smallest)"
    if not tasks:
        raise SimulationError(f"{source}: no tasks to simulate; pick a source with tasks")
    return source, tasks


def run_request(options: SimulationOptions, competition: str, budget_s: float) -> RunRequest:
    """What the kernel is asked for (``arcsub-run.json`` among its inputs)."""
    faults = {name: getattr(options, name) for name in FAULTS if getattr(options, name)}
    return RunRequest(competition=competition, budget_s=budget_s, workers=options.workers, faults=faults)


def kernel_env(options: SimulationOptions) -> dict[str, str]:
    """The parent's environment without proxies and a stale rerun signal, plus Kaggle's
    signal. With a bundle, pip's settings from this machine go too (Kaggle has no
    find-links here)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS and k not in KERNEL_VARS}
    if options.bundle is not None:
        from ..bundle import offline_pip_env

        env = offline_pip_env(env)
        env.pop("PYTHONPATH", None)  # arcsub must come from the bundle's wheel, not from this checkout
    env.pop(NO_NAMESPACE_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    if not options.placeholder:
        env["KAGGLE_IS_COMPETITION_RERUN"] = "1"
    return env


def _check_options(options: SimulationOptions, tasks: list[Task]) -> None:
    for name in ("budget_s", "ram_gb", "disk_gb", "workers"):
        value = getattr(options, name)
        if value is not None and value <= 0:
            raise SimulationError(f"`{name}` {value}: must be positive")
    if options.kill_worker_after_s is not None and options.kill_worker_after_s < 0:
        raise SimulationError(f"`kill_worker_after_s` {options.kill_worker_after_s}: must be 0 or more seconds")
    ids = {t.id for t in tasks}
    engine_task = options.fail_engine if options.fail_engine != ENGINE_START else None
    for name, task_id in (("fail_task", options.fail_task), ("nan_loss", options.nan_loss),
                          ("fail_engine", engine_task), ("stall_task", options.stall_task)):  # fmt: skip
        if task_id and task_id not in ids:
            raise SimulationError(
                f"`{name}` {task_id}: not among the simulated tasks ({', '.join(sorted(ids)[:5])}, ...)"
            )
    if options.config is not None:
        from ..config import load_config

        load_config(options.config)  # a bad config fails here, not hours into the kernel
    if options.wheels is not None and not Path(options.wheels).is_dir():
        raise SimulationError(f"{options.wheels}: `wheels` is not a folder; pass the folder of .whl files")


def choose_mode(options: SimulationOptions) -> tuple[str, str]:
    """``namespace`` or ``fallback``, and why."""
    if options.namespace is False:
        return "fallback", "asked for"
    ok, why = namespace_support()
    if ok and not MOUNTPOINT.is_dir():
        try:
            MOUNTPOINT.mkdir()
            say(f"created an empty {MOUNTPOINT} mountpoint on this machine (runs bind OUT/kaggle there, privately)")
        except OSError as exc:
            ok, why = False, f"cannot create the {MOUNTPOINT} mountpoint ({exc.strerror})"
    if ok:
        return "namespace", why
    if options.namespace:
        raise SimulationError(f"namespaces are not available here: {why}; run without requiring them")
    return "fallback", why


def enforcement(mode: str, limits: Limits, per_file: bool) -> dict:
    kill = "the kernel's process tree" + (
        " (its namespace)" if mode == "namespace" else " (process group + descendants)"
    )
    table = {
        "time": {"enforced": True, "how": f"SIGKILL of {kill} at {limits.budget_s:g} s after launch"},
        "ram": {
            "enforced": True,
            "how": f"PSS of {kill} polled every {RAM_POLL_S:g} s; SIGKILL past {limits.ram_bytes} bytes",
        },
    }
    if mode == "namespace":
        table["disk"] = {"enforced": True, "how": f"tmpfs of {limits.disk_bytes} bytes on /kaggle/working (ENOSPC)"}
        table["network"] = {"enforced": True, "how": "new network namespace, loopback only"}
        table["filesystem"] = {
            "enforced": True,
            "how": "OUT/kaggle bound onto /kaggle (private mount namespace); /kaggle/input read-only; OUT/expected hidden",
        }
    else:
        table["disk"] = {
            "enforced": True,
            "how": f"watcher: working folder size polled every 1 s, SIGKILL past {limits.disk_bytes} bytes"
            + ("; RLIMIT_FSIZE caps each file at that size (EFBIG)" if per_file else ""),
        }
        table["network"] = {"enforced": False, "how": "no network namespace: the kernel can reach the internet"}
        table["filesystem"] = {
            "enforced": False,
            "how": "no bind mount: /kaggle does not exist for the kernel; it gets --input-root/--working-root/--temp-root",
        }
    return table


def _launch(mode: str, layout: Layout, kernel: Path, env: dict, limits: Limits, python: str) -> Launch:
    if mode == "namespace":
        spec = {
            "host_kaggle": str(layout.kaggle),
            "mountpoint": str(MOUNTPOINT),
            "working_bytes": limits.disk_bytes,
            "hide": [str(layout.expected)] if layout.expected.is_dir() else [],
            "argv": [python, str(kernel)],
            "cwd": str(MOUNTPOINT / "working"),
            "status": str(layout.sandbox_status),
        }
        argv = ["unshare", *NAMESPACE_FLAGS, "--", sys.executable, "-I", str(SANDBOX_SCRIPT), json.dumps(spec)]
        return Launch(mode, argv, layout.out, env, status_path=layout.sandbox_status)
    argv = [
        python,
        str(kernel),
        *("--input-root", str(layout.input)),
        *("--working-root", str(layout.working)),
        *("--temp-root", str(layout.temp)),
    ]
    # No tmpfs: a write past the limit cannot fail by itself; cap each file at the limit (EFBIG).
    return Launch(mode, argv, layout.working, env, watch_disk=layout.working, file_size_limit=limits.disk_bytes)


def simulation_limits(options: SimulationOptions, competition) -> Limits:
    """The competition's limits, or what the options set instead."""
    disk_gb = options.disk_gb or competition.working_disk_gb
    return Limits(
        budget_s=float(options.budget_s or competition.time_limit_s),
        ram_bytes=int((options.ram_gb or competition.machine.ram_gb) * 2**30),
        disk_bytes=NO_SPACE_BYTES if options.no_space else int(disk_gb * 2**30),
        kill_worker_after_s=options.kill_worker_after_s,
    )


def _check_sources(options: SimulationOptions) -> None:
    """What the kernel, its Python and its model come from: a bundle, or the parts."""
    if options.bundle is not None and (options.kernel or options.wheels):
        raise SimulationError("`bundle` brings its own kernel and wheels; drop `kernel`/`wheels` or `bundle`")
    if options.over_image is not None and options.bundle is None:
        raise SimulationError(f"`over_image` {options.over_image!r} needs a bundle: pass `bundle` as well")
    if options.model is None and options.bundle is None:
        raise SimulationError("no model folder and no bundle (which brings its own) given; give one of them")


@dataclass
class Staged:
    """The Kaggle-like tree built: the kernel to run and its Python, the bundle it came
    from (None: the working tree's), and the tree's description."""

    kernel: Path
    python: str
    bundle: BundleInputs | None
    tree: dict


def stage(
    options: SimulationOptions, layout: Layout, tasks: list[Task], kernel: Path, model_dir: Path | None
) -> Staged:
    """OUT cleared, the bundle (if any) unpacked, the input tree built around the model
    (``model_dir``, else the bundle's)."""
    clear_out(layout.out)
    python, wheels, bundle = sys.executable, options.wheels, None
    if options.bundle is not None:
        bundle = bundle_inputs(Path(options.bundle), layout.out, echo=say, over_image=options.over_image)
        kernel, wheels, python = bundle.kernel, bundle.wheels, str(bundle.python)
        model_dir = model_dir or bundle.model_dir
        say(f"bundle {options.bundle}: built {bundle.manifest['built_at']} from {bundle.manifest['git_commit']}; "
            "the kernel installs arcsub from its wheels")  # fmt: skip
    tree = build_tree(layout, tasks, model_dir, config=options.config, wheels=wheels, placeholder=options.placeholder)
    return Staged(kernel, python, bundle, tree)


def announce(
    options: SimulationOptions,
    kernel: Path,
    tasks: list[Task],
    source: str,
    competition,
    limits: Limits,
    mode: str,
    why: str,
    layout: Layout,
) -> None:
    """What is simulated, and what this machine cannot enforce, one line each."""
    say(
        f"simulating {kernel.name} on {len(tasks)} task(s) from {source}: profile {competition.name}, "
        f"budget {limits.budget_s:g} s, RAM {limits.ram_bytes / 2**30:g} GiB, working disk "
        f"{limits.disk_bytes / 2**30:g} GiB" + (" (--no-space: 1 MiB)" if options.no_space else "")
    )
    if mode == "namespace":
        say(f"mode: namespace ({why}): no network, OUT/kaggle at /kaggle, tmpfs /kaggle/working")
    else:
        say(f"mode: fallback, no namespace ({why})")
        say("NOT ENFORCED: network: the kernel can reach the internet (no network namespace)")
        say("NOT ENFORCED: /kaggle bind mount: hard-coded /kaggle paths fail; the kernel gets --input-root etc.")
        say("disk: a watcher kills the kernel when the working folder outgrows the limit (no tmpfs)")
    say(f"kernel output: {layout.kernel_log}")


def simulate(options: SimulationOptions, *, echo=say) -> dict:
    """Run ``options.kernel`` as Kaggle would; returns the report also written to
    ``OUT/simulation.json`` (``report["passed"]``: whether Kaggle would accept the run)."""
    from ..competitions import load_competition
    from ..models import model_folder

    kernel = Path(options.kernel) if options.kernel else default_kernel()
    if not kernel.is_file():
        raise SimulationError(f"{kernel}: kernel script not found; pass `kernel` FILE")
    kernel = kernel.resolve()
    competition = load_competition(options.competition)
    source, tasks = select_tasks(options)
    _check_options(options, tasks)
    limits = simulation_limits(options, competition)
    _check_sources(options)
    model_dir = model_folder(options.model) if options.model is not None else None
    mode, why = choose_mode(options)
    layout = Layout(Path(options.out).resolve(), competition.slug)
    staged = stage(options, layout, tasks, kernel, model_dir)
    request = run_request(options, competition.name, limits.budget_s)
    request.write(layout.input / RUN_REQUEST_FILE)
    env = kernel_env(options)
    launch = _launch(mode, layout, staged.kernel, env, limits, staged.python)
    table = enforcement(mode, limits, launch.file_size_limit is not None)
    announce(options, staged.kernel, tasks, source, competition, limits, mode, why, layout)

    record = launch_kernel(launch, limits, log_path=layout.kernel_log, echo=echo, note=say)
    submission = judge_submission(layout.working / "submission.json", tasks)
    report = {
        "kernel": str(staged.kernel),
        "mode": mode,
        "mode_reason": why,
        "profile": competition.name,
        "slug": competition.slug,
        "tasks": {
            "source": source,
            "count": len(tasks),
            "test_inputs": sum(len(t.test) for t in tasks),
            "ids": [t.id for t in tasks],
        },
        "tree": staged.tree,
        "bundle": None if staged.bundle is None else {"path": str(options.bundle), **staged.bundle.manifest},
        "limits": {
            "budget_s": limits.budget_s,
            "ram_bytes": limits.ram_bytes,
            "disk_bytes": limits.disk_bytes,
            "no_space": options.no_space,
        },
        "run_request": request.to_dict(),
        "environment": {k: env[k] for k in (*KERNEL_VARS, "PYTHONUNBUFFERED") if k in env},
        "enforcement": table,
        "run": run_record(record, mode, folder_bytes(layout.working)),
        "faults": {
            "kill_worker": record.kill_worker,
            "fail_task": options.fail_task,
            "nan_loss": options.nan_loss,
            "fail_engine": options.fail_engine,
            "stall_task": options.stall_task,
        },
        "run_kind": "placeholder" if options.placeholder else "rerun",
        "submission": submission,
        "kernel_report": read_kernel_report(layout.working / "report.json"),
        "report_path": str(layout.report),
    }
    report["failures"] = failures(record, submission, placeholder=options.placeholder)
    report["passed"] = not report["failures"]
    write_json_atomic(layout.report, report, indent=1)
    for line in final_lines(report):
        say(line)
    return report


def run_record(record, mode: str, disk_used: int) -> dict:
    """What the run did: exit, time, kills, peaks, what it left running."""
    run = {
        "exit_code": record.exit_code,
        "elapsed_s": record.elapsed_s,
        "killed": record.killed,
        "peak_ram_bytes": record.peak_ram_bytes,
        "disk_used_bytes": disk_used,
        "peak_disk_bytes": record.peak_disk_bytes,
        "left_running": record.left_running,
        "sandbox": record.sandbox or None,
    }
    if mode == "namespace" and "working_used_bytes" in record.sandbox:
        run["tmpfs_used_bytes"] = record.sandbox["working_used_bytes"]
    return run
