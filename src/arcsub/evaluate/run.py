"""One evaluation: the Kaggle kernel (``kernel/main.py``, the file Kaggle runs) on tasks
with known solutions, every task given the same wall clock, then scored here.

Layout under ``--out`` (``OUT``)::

    OUT/evaluation.json         the result (schema: docs/evaluation.md), rewritten after each run
    OUT/evaluation.md           the same as a markdown table
    OUT/evaluation-state.json   what is being evaluated (model, tasks, budget, config): a rerun
                                with the same state resumes; another refuses
    OUT/kaggle/input/...        the kernel's inputs: challenges only, model (+ arcsub.toml)
    OUT/kaggle/working/         the kernel's saved output: submission.json, arcsub/results/<task>.json
    OUT/kaggle/temp/            adapters and predictions
    OUT/expected/               the solutions (outside the kernel's tree: they never reach the model)
    OUT/logs/kernel.log         everything the kernel printed

Resume is the kernel's own: it takes the per-task results an earlier run left in
``working/arcsub/results`` and runs only the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import arcsub

from ..console import progress_bar, say
from ..io import file_sha256, write_json_atomic
from ..tasks import Task
from .budget import DEFAULT_MACHINE, EvaluationError, TaskBudget, kernel_budget_s, task_budget
from .metrics import overall, task_entry, task_predictions
from .report import write_evaluation

STATE_FILE = "evaluation-state.json"
KERNEL_ENTRIES = ("kaggle", "expected", "logs", STATE_FILE, "evaluation.json", "evaluation.md")
DONE_LINE = re.compile(r"task (\S+) done \(")


@dataclass
class EvaluationOptions:
    out: Path
    model: Path | None = None  # a model folder (the command line resolves names such as default)
    model_name: str | None = None  # what the user called it, for the report (default: the folder)
    data: str = "arc1/evaluation"
    solutions: str | None = None  # a Kaggle solutions file for a challenges file in data
    smallest: int | None = None
    skip_smallest: int = 0  # leave the N smallest out first: a second slice, held out from the first
    config: Path | None = None
    per_task_s: float | None = None
    budget_competition: str | None = None  # the competition profile whose budget per task to use
    competition: str = DEFAULT_MACHINE  # the competition profile the kernel runs under here (workers, device)
    workers: int | None = None
    allow_overlap: bool = False
    restart: bool = False  # discard what an earlier run left in OUT


def load_evaluation_tasks(options: EvaluationOptions) -> list[Task]:
    from ..tasks import load_tasks, smallest_tasks

    tasks = load_tasks(options.data, solutions=options.solutions).tasks
    if options.skip_smallest < 0:
        raise EvaluationError(f"`skip_smallest` {options.skip_smallest}: pass 0 or more")
    skipped = {t.id for t in smallest_tasks(tasks, options.skip_smallest)}
    if options.smallest is not None:
        if options.smallest < 1:
            raise EvaluationError(f"`smallest` {options.smallest}: pass at least 1")
        tasks = smallest_tasks(tasks, options.skip_smallest + options.smallest)
    tasks = [t for t in tasks if t.id not in skipped]
    if not tasks:
        raise EvaluationError(f"{options.data}: no tasks to evaluate on")
    missing = [t.id for t in tasks if not t.has_solutions]
    if missing:
        raise EvaluationError(
            f"{options.data}: {len(missing)} task(s) without test outputs ({missing[0]}, ...); evaluation needs "
            "solutions: pass a dataset with them, or `solutions` FILE with a challenges file"
        )
    return tasks


def model_facts(model_dir: Path) -> dict:
    from ..models import config_facts

    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {"parameters": None, "context_window": None}
    return {"parameters": config_facts.count_parameters(cfg), "context_window": config_facts.context_window(cfg)}


def model_stamp(model_dir: Path) -> dict | None:
    from ..models import STAMP_FILE

    try:
        return json.loads((model_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_state(out: Path, state: dict, restart: bool) -> bool:
    """True when ``out`` holds this evaluation already (resume); clears it for a new one."""
    path = out / STATE_FILE
    if path.is_file() and not restart:
        before = json.loads(path.read_text())
        if before == state:
            return True
        changed = sorted(k for k in state.keys() | before.keys() if state.get(k) != before.get(k))
        raise EvaluationError(
            f"{out}: holds an evaluation with another {', '.join(changed)}; use another `out`, or `restart` to discard it"
        )
    for name in KERNEL_ENTRIES:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    return False


def kernel_environment() -> dict[str, str]:
    """This environment without proxies and stale settings, plus Kaggle's signal."""
    from ..simulate import KERNEL_VARS, PROXY_VARS

    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS and k not in KERNEL_VARS}
    env.update(KAGGLE_IS_COMPETITION_RERUN="1", PYTHONUNBUFFERED="1")  # the full path on every task, not the smoke run
    return env


def run_kernel_on(layout, todo: int, env: dict, budget_s: float, ram_bytes: int, progress: bool):
    """``kernel/main.py`` on the tree, its output in the log, a bar over the tasks."""
    from ..simulate import Launch, Limits, default_kernel, launch_kernel

    argv = [
        sys.executable,
        str(default_kernel()),
        *("--input-root", str(layout.input)),
        *("--working-root", str(layout.working)),
        *("--temp-root", str(layout.temp)),
    ]
    launch = Launch("fallback", argv, layout.working, env)
    limits = Limits(budget_s=budget_s, ram_bytes=ram_bytes, disk_bytes=1 << 50)
    bar = progress_bar(total=todo, desc="tasks", unit="task", enabled=progress)

    def echo(line: str) -> None:
        if DONE_LINE.search(line):
            bar.update(1)

    try:
        layout.logs.mkdir(parents=True, exist_ok=True)
        return launch_kernel(launch, limits, log_path=layout.kernel_log, echo=echo, note=say)
    finally:
        bar.close()


def collect(tasks: list[Task], layout) -> dict[str, dict]:
    """Every task's entry from what the kernel left: its result, else the fallback's attempts."""
    from ..kernel import results_dir
    from ..submission import load_submission

    submission = load_submission(layout.working / "submission.json")
    results = results_dir(layout.working)
    predictions_dir = layout.temp / "arcsub" / "predictions"
    entries = {}
    for task in tasks:
        path = results / f"{task.id}.json"
        result = json.loads(path.read_text()) if path.is_file() else None
        attempts = result["attempts"] if result else submission.get(task.id, [])
        predictions = task_predictions(predictions_dir, task.id) if result else []
        entries[task.id] = task_entry(task, attempts, result, predictions)
    return entries


def evaluate(options: EvaluationOptions, *, progress: bool = True) -> dict:
    """Run (or resume) the evaluation; returns what ``OUT/evaluation.json`` holds."""
    from ..competitions import load_competition
    from ..config import load_config
    from ..kernel import RUN_REQUEST_FILE, RunRequest, results_dir
    from ..leakage import guard_evaluation
    from ..models import model_folder
    from ..simulate import Layout, build_tree

    out = Path(options.out).resolve()
    tasks = load_evaluation_tasks(options)
    if options.model is None:
        raise EvaluationError("no model folder given to evaluate; give a model folder")
    model_dir = model_folder(options.model)
    overlap = guard_evaluation(tasks, model_dir, allow_overlap=options.allow_overlap)
    config = load_config(options.config)
    competition = load_competition(options.competition)
    if options.workers is not None and options.workers < 1:
        raise EvaluationError(f"`workers` {options.workers}: pass at least 1")
    budget: TaskBudget = task_budget(
        str(model_dir),
        per_task_s=options.per_task_s,
        competition=options.budget_competition,
        lora_rank=config.finetune.lora_rank,
    )
    workers = options.workers or competition.machine.worker_count
    state = {
        "model": str(model_dir),
        "model_stamp": model_stamp(model_dir),  # the default's cache is rebuilt in place on an upgrade
        "data": options.data,
        "tasks": [t.id for t in tasks],
        "per_task_s": round(budget.per_task_s, 1),
        "config_sha256": file_sha256(options.config) if options.config else None,
        "machine": competition.name,
        "workers": workers,
    }
    layout = Layout(out, competition.slug)
    resumed = check_state(out, state, options.restart)
    if not resumed:
        build_tree(layout, tasks, model_dir, config=options.config)
        write_json_atomic(out / STATE_FILE, state, indent=1)
    done_before = sorted(p.stem for p in results_dir(layout.working).glob("*.json"))
    todo = len(tasks) - len(done_before)
    say(
        f"evaluating {model_dir.name} on {len(tasks)} task(s) from {options.data}: {budget.per_task_s:.0f} s per "
        f"task ({budget.note}), {workers} worker(s) on {competition.name}"
        + (f"; resuming, {len(done_before)} done" if done_before else "")
    )
    if overlap:
        say(f"--allow-overlap: the model was trained on {len(overlap)} of these tasks; their scores measure memory")
    say(f"kernel output: {layout.kernel_log}")
    started = time.time()
    record, request = None, None
    if todo > 0:
        kernel_s = kernel_budget_s(budget.per_task_s, todo, competition.plan.safety_margin_s)
        request = RunRequest(competition=competition.name, budget_s=kernel_s, task_s=budget.per_task_s,
                             workers=options.workers)  # fmt: skip
        request.write(layout.input / RUN_REQUEST_FILE)
        env = kernel_environment()
        record = run_kernel_on(layout, todo, env, kernel_s + 60, int(competition.machine.ram_gb * 2**30), progress)
        if record.exit_code != 0:
            say(f"the kernel exited with {record.exit_code}: unfinished tasks are scored on the fallback; "
                f"see {layout.kernel_log}")  # fmt: skip
    entries = collect(tasks, layout)
    evaluation = {
        "kind": "arcsub-evaluation",
        "version": 1,
        "model": {"name": options.model_name or str(options.model), "path": str(model_dir), **model_facts(model_dir)},
        "data": {"source": options.data, "tasks": len(tasks), "test_outputs": sum(len(t.test) for t in tasks)},
        "budget": {
            **budget.to_dict(),
            "kernel_budget_s": request.budget_s if request else None,
            "workers": workers,
            "machine": machine_line(competition),
        },
        "settings": {
            "ttft_max_steps": config.kernel.max_steps,
            "augmentations": config.inference.num_augmentations,
            "samples_per_prompt": config.inference.samples_per_prompt,
            "backend": config.inference.backend,
            "config": str(options.config) if options.config else None,
        },
        "overall": overall(entries, tasks),
        "tasks": entries,
        "leakage": {"allow_overlap": options.allow_overlap, "overlap": len(overlap)},
        "kernel": kernel_summary(layout, record, time.time() - started),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "arcsub_version": arcsub.__version__,
    }
    for line in write_evaluation(evaluation, out):
        say(line)
    return evaluation


def machine_line(machine) -> str:
    from ..hardware import nvidia_gpus

    gpus = nvidia_gpus()
    where = ", ".join(g["name"] for g in gpus) if gpus else f"{os.cpu_count()} CPU core(s), no GPU"
    return f"{machine.name} profile on {where}"


def kernel_summary(layout, record, seconds: float) -> dict:
    """What the last kernel run reported (faults, software), for the record."""
    try:
        report = json.loads((layout.working / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    return {
        "ran": record is not None,
        "exit_code": None if record is None else record.exit_code,
        "elapsed_s": round(seconds, 1),
        "faults": report.get("faults", []),
        "software": (report.get("software") or {}).get("versions"),
        "worker_startups_s": (report.get("stages_s") or {}).get("worker_startups"),
    }
