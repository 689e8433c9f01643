"""``run_kernel``: the whole Kaggle run, from the input root to ``submission.json``.

    1. read the test tasks and write the fallback submission (rule-based, no model);
    2. take the results a previous run of the kernel left (resume);
    3. choose the competition profile (the run request's, else the one for the
       competition found, else the default) and the mode: the smoke configuration on
       the public placeholder file, the full one on the hidden set;
    4. plan the budget and place the workers;
    5. run the workers (``supervisor.py``), merging results as they arrive;
    6. write the run report.

Steps 1-4 are ``prepare_run`` (a :class:`PreparedRun`), 5-6 ``solve``. The profiler's
mode on Kaggle (``kernel.profile_machine``) is the profiler's own: it prepares the run
here and measures instead of solving (``arcsub.profile.on_kaggle``).

Paths: ``working`` is the saved output (``/kaggle/working``: submission, results,
report, logs), ``temp`` the scratch space (``/kaggle/temp``: adapters, predictions,
worker logs until the end). What the simulator and ``arcsub evaluate`` want of the run
(competition profile, budget, seconds per task, workers) comes in the run request
(``arcsub-run.json`` among the inputs, :class:`~.inputs.RunRequest`); the environment
carries Kaggle's own signals only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..competitions import DEFAULT_COMPETITION, Competition, competition_for_slug, load_competition
from ..config import Config, load_config, save_config
from ..console import LOG_FORMAT, LOGGER, show_arcsub_lines
from ..errors import ArcsubError
from ..hardware import nvidia_gpus
from ..models import read_config
from ..tasks import Task, load_tasks, smallest_tasks
from .inputs import KernelInputs, RunRequest, find_inputs, is_placeholder, read_run_request
from .plan import Budget, checkpointing_needed
from .report import build_report, write_failure_report, write_report
from .results import SubmissionBook, results_dir
from .spec import WorkerSpec
from .stack import (
    GpuUnusableError,
    engine_environment,
    gpu_problem,
    installed_versions,
    probe_cuda,
    wheel_cuda_library_dirs,
    worker_library_path,
)
from .supervisor import Supervisor, WorkerSlot

log = logging.getLogger("arcsub.kernel")

LOG_TAIL_BYTES = 2 << 20  # of each worker log copied into the saved output
INSTALL_RECORD = Path("arcsub") / "install.json"  # written by kernel/main.py's install step
CPU_CORES_PER_WORKER = 2


class KernelError(ArcsubError):
    pass


def choose_competition(request: RunRequest, competition_dir: Path) -> Competition:
    if request.competition:
        return load_competition(request.competition)
    for folder in (competition_dir, *competition_dir.parents):
        found = competition_for_slug(folder.name)
        if found is not None:
            return found
    return load_competition(DEFAULT_COMPETITION)


def fit_to_machine(config: Config, competition: Competition) -> Config:
    """The settings the profile's machine decides: the engine's memory share beside
    training, eager mode on small cards (CUDA graphs cost memory), one task per call."""
    machine = competition.machine
    if config.finetune.method != "lora":
        raise KernelError("finetune.method = 'full' cannot run in the kernel (one adapter per task); use lora")
    inference = dataclasses.replace(config.inference, tasks_per_call=1)
    if machine.accelerator == "cuda":
        inference = dataclasses.replace(
            inference,
            gpu_memory_utilization=competition.plan.vllm_memory_share,
            enforce_eager=inference.enforce_eager or machine.gpu_memory_gb < 20,
        )
    elif inference.kv_cache_gib is None:
        inference = dataclasses.replace(inference, kv_cache_gib=1.0)
    return dataclasses.replace(config, inference=inference)


def on_the_cpu(config: Config) -> Config:
    """The settings for CPU workers on a GPU machine whose GPUs cannot be used: the
    kaggle set's vLLM is a CUDA build, so transformers serves."""
    return dataclasses.replace(config, inference=dataclasses.replace(config.inference, backend="transformers"))


def with_checkpointing_if_needed(config: Config, competition: Competition, model_dir: Path) -> Config:
    """Gradient checkpointing on when the longest training step would not fit beside the
    engine's share of a GPU (``plan.checkpointing_needed``); said in one line."""
    machine = competition.machine
    why = checkpointing_needed(
        read_config(model_dir), config, machine.gpu_memory_gb, 1 - competition.plan.vllm_memory_share
    )
    if why is None:
        return config
    log.info("gradient checkpointing on: %s", why)
    return dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, gradient_checkpointing=True))


def cpu_worker_count(most: int) -> int:
    return max(1, min(most, len(os.sched_getaffinity(0)) // CPU_CORES_PER_WORKER))


def read_install_record(working: Path) -> dict | None:
    try:
        value = json.loads((working / INSTALL_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclasses.dataclass
class Placement:
    """Where the workers run and with what: the profile's GPUs, or CPU workers when the
    installed torch cannot use them (a scoring rerun goes on as far as it can)."""

    device: str
    workers: int
    config: Config
    environ: Mapping[str, str]
    smallest_first: bool = False  # CPU workers answer more tasks smallest first
    headline: list[str] = dataclasses.field(default_factory=list)  # what went wrong, for the report's top


def place_workers(
    competition: Competition,
    config: Config,
    mode: str,
    workers: int,
    environ: Mapping[str, str],
    gpus: list[dict[str, str]],
    software: dict,
) -> Placement:
    """One worker per usable GPU with the engine settings its generation needs; on a
    GPU profile whose GPUs torch cannot use, the smoke run stops (``GpuUnusableError``:
    the user must see it) and a scoring rerun goes on with CPU workers."""
    device = competition.machine.accelerator
    if device != "cuda":
        return Placement(device, workers, config, environ)
    problem = None
    cuda: dict = {}
    if not gpus:
        problem = (
            f"profile {competition.name} runs on {competition.machine.gpus}x {competition.machine.gpu_name}, but nvidia-smi "
            "finds no GPU: attach the accelerator, or choose a CPU profile (local-cpu)"
        )
    else:
        versions = software["versions"]
        software["cuda"] = cuda = probe_cuda()
        log.info("GPUs: %s; driver %s; torch %s (CUDA %s)", ", ".join(g["name"] for g in gpus),
                 gpus[0]["driver"], versions.get("torch"), cuda.get("cuda_build"))  # fmt: skip
        problem = gpu_problem(cuda, gpus, versions)
    if problem and mode == "smoke":
        raise GpuUnusableError(problem)
    if problem:
        workers = cpu_worker_count(workers)
        line = f"GPU NOT USABLE: {problem}; the run went on with {workers} CPU worker(s) (transformers), smallest first"
        log.error("%s", line)
        return Placement("cpu", workers, on_the_cpu(config), environ, smallest_first=True, headline=[line])
    if len(gpus) < workers:
        log.warning("%d GPU(s) found, the profile expects %d: one worker per GPU found", len(gpus), workers)
        workers = len(gpus)
    engine_env = engine_environment(cuda.get("capability") or competition.machine.compute_capability)
    return Placement("cuda", workers, config, {**engine_env, **environ})  # a setting the user made wins


def worker_slots(count: int, device: str, spec: dict, temp: Path, environ: Mapping[str, str]) -> list[WorkerSlot]:
    """One slot per GPU (``CUDA_VISIBLE_DEVICES``), or per equal share of the cores."""
    cores = sorted(os.sched_getaffinity(0))
    slots = []
    for index in range(count):
        env = dict(environ)
        env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        own_cores: list[int] = []
        if device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = str(index)
            library_path = worker_library_path(environ.get("LD_LIBRARY_PATH"), wheel_cuda_library_dirs())
            if library_path:
                env["LD_LIBRARY_PATH"] = library_path
        else:
            share = max(1, len(cores) // count)
            own_cores = cores[index * share : (index + 1) * share] or cores[-share:]
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, own_cores))
            env["OMP_NUM_THREADS"] = str(len(own_cores))
            env["CUDA_VISIBLE_DEVICES"] = ""
        spec_path = temp / f"worker-{index}.json"
        spec_path.write_text(
            json.dumps(dataclasses.asdict(WorkerSpec(index=index, device=device, cores=own_cores, **spec)))
        )
        slots.append(WorkerSlot(index, env, spec_path, temp / "logs" / f"worker-{index}.log"))
    return slots


def copy_logs(temp_logs: Path, working_logs: Path) -> None:
    """The tail of each worker log into the saved output, space permitting."""
    for path in sorted(temp_logs.glob("*.log")):
        try:
            working_logs.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as source:
                source.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                (working_logs / path.name).write_bytes(source.read())
        except OSError as exc:
            log.warning("%s: not copied to %s (%s)", path.name, working_logs, exc)
            return


@dataclasses.dataclass
class PreparedRun:
    """Everything decided before the workers start: the inputs, the submission book
    (fallback written, earlier results taken), the competition, the mode and the tasks
    to do, the budget, the workers' placement and the final config."""

    inputs: KernelInputs
    model_dir: Path
    working: Path
    temp: Path
    tasks: list[Task]
    book: SubmissionBook
    resumed: list[str]
    competition: Competition
    request: RunRequest
    mode: str  # smoke | full
    todo: list[Task]
    budget: Budget
    place: Placement
    gpus: list[dict[str, str]]
    software: dict

    @property
    def config(self) -> Config:
        return self.place.config


def take_tasks(inputs: KernelInputs, working: Path, start: float) -> tuple[list[Task], SubmissionBook, list[str]]:
    """The test tasks, the fallback submission written, the results an earlier run left."""
    tasks = load_tasks(str(inputs.test_file)).tasks
    book = SubmissionBook(tasks, working / "submission.json", results_dir(working))
    book.write_fallback()
    log.info("fallback submission written for %d task(s) (%.1fs after start)", len(tasks), time.time() - start)
    resumed = book.resume()
    if resumed:
        log.info("resuming: %d task(s) already done by an earlier run", len(resumed))
    return tasks, book, resumed


def choose_mode(
    tasks: list[Task],
    resumed: list[str],
    inputs: KernelInputs,
    config: Config,
    limit: float,
    environ: Mapping[str, str],
) -> tuple[str, list[Task], float]:
    """The smoke run (its few smallest tasks, its short budget) on the public
    placeholder, else the full run; returns the mode, the tasks to do and the limit."""
    done = set(resumed)
    if is_placeholder({t.id for t in tasks}, inputs.competition_dir, environ):
        todo = [t for t in smallest_tasks(tasks, config.kernel.smoke_tasks) if t.id not in done]
        return "smoke", todo, min(limit, config.kernel.smoke_budget_s)
    return "full", [t for t in tasks if t.id not in done], limit


def prepare_run(
    input_root: str | os.PathLike = "/kaggle/input",
    working_root: str | os.PathLike = "/kaggle/working",
    temp_root: str | os.PathLike = "/kaggle/temp",
    *,
    environ: Mapping[str, str] = os.environ,
    started: float | None = None,
) -> PreparedRun:
    """Steps 1-4 of the run (see the module docstring): the fallback on disk, the budget
    planned, the workers placed. ``started``: when the kernel process began (its budget
    counts from then)."""
    start = started or time.time()
    working, temp = Path(working_root), Path(temp_root) / "arcsub"
    working.mkdir(parents=True, exist_ok=True)
    inputs = find_inputs(input_root)
    tasks, book, resumed = take_tasks(inputs, working, start)

    request = read_run_request(inputs.run_request)
    competition = choose_competition(request, inputs.competition_dir)
    config = fit_to_machine(load_config(inputs.config_file), competition)
    limit = request.budget_s or competition.time_limit_s
    mode, todo, limit = choose_mode(tasks, resumed, inputs, config, limit, environ)
    budget = Budget(start, limit, competition.plan.safety_margin_s)
    for line in inputs.describe():
        log.debug("%s", line)
    log.info("%s; %s run: %d task(s) to do, planned to end %.0fs after start",
             competition.summary(), mode, len(todo), budget.deadline - start)  # fmt: skip

    gpus = nvidia_gpus()
    software: dict = {"versions": installed_versions()}
    workers = request.workers or competition.machine.worker_count
    place = place_workers(competition, config, mode, workers, environ, gpus, software)
    if inputs.model_dir is None:
        raise KernelError(f"{input_root}: no model folder (config.json beside weights); attach the model dataset")
    if place.device == "cuda":
        place.config = with_checkpointing_if_needed(place.config, competition, inputs.model_dir)
    return PreparedRun(
        inputs=inputs, model_dir=inputs.model_dir, working=working, temp=temp, tasks=tasks, book=book,
        resumed=resumed, competition=competition, request=request, mode=mode, todo=todo, budget=budget,
        place=place, gpus=gpus, software=software,
    )  # fmt: skip


def save_run_config(run: PreparedRun) -> Path:
    """The final config in the scratch space (the workers read it) and, space
    permitting, beside the saved output."""
    run.temp.mkdir(parents=True, exist_ok=True)
    (run.temp / "logs").mkdir(exist_ok=True)
    config_path = save_config(run.config, run.temp / "config.toml")
    try:
        save_config(run.config, run.working / "arcsub" / "config.toml")
    except OSError:
        pass
    return config_path


def solve(run: PreparedRun) -> dict:
    """Steps 5-6: the workers on the tasks to do, then the report; returns it."""
    working, temp, place = run.working, run.temp, run.place
    spec = {
        "test_file": str(run.inputs.test_file),
        "model_dir": str(run.model_dir),
        "config_file": str(save_run_config(run)),
        "results_dir": str(results_dir(working)),
        "predictions_dir": str(temp / "predictions"),
        "adapters_dir": str(temp / "adapters"),
        "faults": dict(run.request.faults),
    }
    record = None
    try:
        slots = worker_slots(place.workers, place.device, spec, temp, place.environ)
        task_s = run.request.task_s  # arcsub evaluate: seconds per task
        if task_s:
            log.info("evaluation: %.0fs per task on average (the run request's task_s), sized by task", task_s)
        supervisor = Supervisor(
            run.todo, run.book, run.budget, run.config.kernel, slots, task_s=task_s,
            predictions_dir=temp / "predictions", selection=run.config.inference.selection,
            smallest_first=place.smallest_first,
        )  # fmt: skip
        record = supervisor.run()
    finally:
        copy_logs(temp / "logs", working / "logs")
    report = build_report(
        mode=run.mode, profile=run.competition, budget=run.budget, record=record, sources=run.book.sources,
        tasks_total=len(run.tasks), resumed=run.resumed, gpus=run.gpus, submission_saved=not run.book.unsaved,
        software=run.software, headline=place.headline, install=read_install_record(working),
    )  # fmt: skip
    for line in write_report(report, working):
        log.info("%s", line)
    return report


def run_kernel(
    input_root: str | os.PathLike = "/kaggle/input",
    working_root: str | os.PathLike = "/kaggle/working",
    temp_root: str | os.PathLike = "/kaggle/temp",
    *,
    environ: Mapping[str, str] = os.environ,
    started: float | None = None,
) -> dict:
    """The run (see the module docstring); returns the report."""
    run = prepare_run(input_root, working_root, temp_root, environ=environ, started=started)
    if run.config.kernel.profile_machine:
        raise KernelError(
            "kernel.profile_machine = true is the profiler's mode: kernel/main.py hands it to arcsub.profile"
        )
    return solve(run)


def profile_mode_requested(input_root: str | os.PathLike) -> bool:
    """Whether the settings under ``input_root`` ask for the profiler's mode
    (``kernel.profile_machine``); False when they cannot be read (the run then says why)."""
    try:
        return load_config(find_inputs(input_root).config_file).kernel.profile_machine
    except ArcsubError:
        return False


def kernel_main(
    input_root: str,
    working_root: str,
    temp_root: str,
    *,
    started: float | None = None,
    run: Callable[..., dict] = run_kernel,
) -> int:
    """What ``kernel/main.py`` calls: ``run`` (the kernel's run, or the profiler's mode)
    with arcsub's lines on the console and in ``working/logs/kernel.log``; a user error
    prints one line. Returns the exit code:
    0, or non-zero when the run failed (written at the top of report.md) or when a smoke
    run's model answered no task. kernel/main.py then applies Kaggle's rule (a scoring
    rerun with a valid submission on disk exits 0)."""
    show_arcsub_lines()
    handler = None
    working = Path(working_root)
    try:
        (working / "logs").mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(working / "logs" / "kernel.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.DEBUG)
        logging.getLogger(LOGGER).addHandler(handler)
    except OSError:
        pass  # a full disk: the console still has the lines
    try:
        report = run(input_root, working_root, temp_root, started=started)
    except ArcsubError as exc:
        log.error("arcsub kernel: error: %s", exc)
        write_failure_report(working, str(exc))
        return 2
    except Exception as exc:  # a bug: its traceback in the log, the failure in the report
        log.exception("arcsub kernel: failed")
        write_failure_report(working, f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if handler is not None:
            logging.getLogger(LOGGER).removeHandler(handler)
            handler.close()
    tasks = report.get("tasks") or {}
    if report.get("mode") == "smoke" and tasks.get("total") and not tasks.get("by_model"):
        log.error("arcsub kernel: the smoke run's model answered no task (see the faults above and logs/); "
                  "a submission from this bundle would score the fallback only")  # fmt: skip
        return 1
    return 0
