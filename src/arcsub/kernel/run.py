"""``run_kernel``: the whole Kaggle run, from the input root to ``submission.json``.

    1. read the test tasks and write the fallback submission (rule-based, no model);
    2. take the results a previous run of the kernel left (resume);
    3. choose the profile (``ARCSUB_PROFILE``, else the one for the competition found,
       else the default) and the mode: the smoke configuration on the public
       placeholder file, the full one on the hidden set;
    4. plan the budget and run the workers (``supervisor.py``), merging results as
       they arrive;
    5. write the run report.

Paths: ``working`` is the saved output (``/kaggle/working``: submission, results,
report, logs), ``temp`` the scratch space (``/kaggle/temp``: adapters, predictions,
worker logs until the end). The simulator's overrides come in the environment:
``ARCSUB_PROFILE``, ``ARCSUB_BUDGET_S``, ``ARCSUB_WORKERS``; ``arcsub evaluate``'s in
``ARCSUB_TASK_S`` (the seconds each task gets on average, whatever start-up took).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..competitions import DEFAULT_COMPETITION, Competition, competition_for_slug, load_competition
from ..config import Config, load_config, save_config
from ..console import LOG_FORMAT, LOGGER, show_arcsub_lines
from ..errors import ArcsubError
from ..hardware import nvidia_gpus
from ..io import write_json_atomic
from ..models import read_config
from ..tasks import load_tasks, smallest_tasks
from .inputs import find_inputs, is_placeholder
from .plan import Budget, checkpointing_needed
from .report import build_report, write_failure_report, write_report
from .results import SubmissionBook
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


def choose_profile(environ: Mapping[str, str], competition_dir: Path) -> Competition:
    if environ.get("ARCSUB_PROFILE"):
        return load_competition(environ["ARCSUB_PROFILE"])
    for folder in (competition_dir, *competition_dir.parents):
        found = competition_for_slug(folder.name)
        if found is not None:
            return found
    return load_competition(DEFAULT_COMPETITION)


def fit_to_machine(config: Config, profile: Competition) -> Config:
    """The settings the profile's machine decides: the engine's memory share beside
    training, eager mode on small cards (CUDA graphs cost memory), one task per call."""
    machine = profile.machine
    if config.finetune.method != "lora":
        raise KernelError("finetune.method = 'full' cannot run in the kernel (one adapter per task); use lora")
    inference = dataclasses.replace(config.inference, tasks_per_call=1)
    if machine.accelerator == "cuda":
        inference = dataclasses.replace(
            inference,
            gpu_memory_utilization=profile.plan.vllm_memory_share,
            enforce_eager=inference.enforce_eager or machine.gpu_memory_gb < 20,
        )
    elif inference.kv_cache_gib is None:
        inference = dataclasses.replace(inference, kv_cache_gib=1.0)
    return dataclasses.replace(config, inference=inference)


def on_the_cpu(config: Config) -> Config:
    """The settings for CPU workers on a GPU machine whose GPUs cannot be used: the
    kaggle set's vLLM is a CUDA build, so transformers serves."""
    return dataclasses.replace(config, inference=dataclasses.replace(config.inference, backend="transformers"))


def with_checkpointing_if_needed(config: Config, profile: Competition, model_dir: Path) -> Config:
    """Gradient checkpointing on when the longest training step would not fit beside the
    engine's share of a GPU (``plan.checkpointing_needed``); said in one line."""
    machine = profile.machine
    why = checkpointing_needed(
        read_config(model_dir), config, machine.gpu_memory_gb, 1 - profile.plan.vllm_memory_share
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
    profile: Competition,
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
    device = profile.machine.accelerator
    if device != "cuda":
        return Placement(device, workers, config, environ)
    problem = None
    cuda: dict = {}
    if not gpus:
        problem = (
            f"profile {profile.name} runs on {profile.machine.gpus}x {profile.machine.gpu_name}, but nvidia-smi "
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
    engine_env = engine_environment(cuda.get("capability") or profile.machine.compute_capability)
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


def run_kernel(
    input_root: str | os.PathLike = "/kaggle/input",
    working_root: str | os.PathLike = "/kaggle/working",
    temp_root: str | os.PathLike = "/kaggle/temp",
    *,
    environ: Mapping[str, str] = os.environ,
    started: float | None = None,
) -> dict:
    """The run (see the module docstring); returns the report. ``started``: when the
    kernel process began (its budget counts from then)."""
    start = started or time.time()
    working, temp = Path(working_root), Path(temp_root) / "arcsub"
    working.mkdir(parents=True, exist_ok=True)
    inputs = find_inputs(input_root)
    tasks = load_tasks(str(inputs.test_file)).tasks
    book = SubmissionBook(tasks, working / "submission.json", working / "arcsub" / "results")
    book.write_fallback()
    log.info("fallback submission written for %d task(s) (%.1fs after start)", len(tasks), time.time() - start)
    resumed = book.resume()
    if resumed:
        log.info("resuming: %d task(s) already done by an earlier run", len(resumed))

    profile = choose_profile(environ, inputs.competition_dir)
    config = fit_to_machine(load_config(inputs.config_file), profile)
    limit = float(environ.get("ARCSUB_BUDGET_S") or profile.time_limit_s)
    todo = [t for t in tasks if t.id not in set(resumed)]
    mode = "full"
    if is_placeholder({t.id for t in tasks}, inputs.competition_dir, environ):
        mode = "smoke"
        todo = [t for t in smallest_tasks(tasks, config.kernel.smoke_tasks) if t.id not in set(resumed)]
        limit = min(limit, config.kernel.smoke_budget_s)
    budget = Budget(start, limit, profile.plan.safety_margin_s)
    for line in inputs.describe():
        log.debug("%s", line)
    log.info("%s; %s run: %d task(s) to do, planned to end %.0fs after start",
             profile.summary(), mode, len(todo), budget.deadline - start)  # fmt: skip

    gpus = nvidia_gpus()
    versions = installed_versions()
    software: dict = {"versions": versions}
    workers = int(environ.get("ARCSUB_WORKERS") or profile.machine.worker_count)
    place = place_workers(profile, config, mode, workers, environ, gpus, software)
    config, device, workers, environ = place.config, place.device, place.workers, place.environ
    if inputs.model_dir is None:
        raise KernelError(f"{input_root}: no model folder (config.json beside weights); attach the model dataset")
    if device == "cuda":
        config = with_checkpointing_if_needed(config, profile, inputs.model_dir)

    if config.kernel.profile_machine:
        return profile_machine(inputs.model_dir, config, device, working, gpus, start)

    temp.mkdir(parents=True, exist_ok=True)
    (temp / "logs").mkdir(exist_ok=True)
    config_path = save_config(config, temp / "config.toml")
    try:
        save_config(config, working / "arcsub" / "config.toml")
    except OSError:
        pass
    spec = {
        "test_file": str(inputs.test_file),
        "model_dir": str(inputs.model_dir),
        "config_file": str(config_path),
        "results_dir": str(working / "arcsub" / "results"),
        "predictions_dir": str(temp / "predictions"),
        "adapters_dir": str(temp / "adapters"),
    }
    record = None
    try:
        slots = worker_slots(workers, device, spec, temp, environ)
        task_s = float(environ.get("ARCSUB_TASK_S") or 0) or None  # arcsub evaluate: seconds per task
        if task_s:
            log.info("evaluation: %.0fs per task on average (ARCSUB_TASK_S), sized by task", task_s)
        supervisor = Supervisor(
            todo, book, budget, config.kernel, slots, task_s=task_s, predictions_dir=temp / "predictions",
            selection=config.inference.selection, smallest_first=place.smallest_first,
        )  # fmt: skip
        record = supervisor.run()
    finally:
        copy_logs(temp / "logs", working / "logs")
    report = build_report(
        mode=mode, profile=profile, budget=budget, record=record, sources=book.sources,
        tasks_total=len(tasks), resumed=resumed, gpus=gpus, submission_saved=not book.unsaved,
        software=software, headline=place.headline, install=read_install_record(working),
    )  # fmt: skip
    for line in write_report(report, working):
        log.info("%s", line)
    return report


def profile_machine(model_dir: Path, config: Config, device: str, working: Path, gpus: list, start: float) -> dict:
    """Profile mode (``kernel.profile_machine``): one push measures Kaggle's machine
    (``arcsub profile plan --from profile.json`` projects a run from it). The fallback
    submission stays; one GPU is measured, in the serving dtype the profile sets."""
    from ..profile import measure_profile

    log.info("profile mode: measuring %s on %s (the fallback submission stays)", model_dir, gpus or device)
    measure_profile(
        model_dir,
        working / "profile.json",
        backend=config.inference.backend,
        device=device,
        quick=device == "cpu",  # a CPU dry run proves the path; the GPU run measures the full grid
        config=config,
        notify=lambda line: log.info("%s", line),
        progress=False,
    )  # fmt: skip
    report = {"mode": "profile", "profile_json": str(working / "profile.json"), "gpus": gpus,
              "elapsed_s": round(time.time() - start, 1)}  # fmt: skip
    write_json_atomic(working / "report.json", report, indent=1)
    return report


def kernel_main(input_root: str, working_root: str, temp_root: str, *, started: float | None = None) -> int:
    """What ``kernel/main.py`` calls: arcsub's lines on the console and in
    ``working/logs/kernel.log``; a user error prints one line. Returns the exit code:
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
        report = run_kernel(input_root, working_root, temp_root, started=started)
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
