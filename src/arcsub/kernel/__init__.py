"""The Kaggle kernel's run: budget plan, one worker per GPU,
results merged into an always-valid ``submission.json``, and the run report.

The public entry
  ``kernel_main(input_root, working_root, temp_root)``  what ``kernel/main.py`` calls
  ``run_kernel(...)``  the run itself (``run.py``); returns the report
  ``prepare_run(...)``  the run up to the workers' start (a ``PreparedRun``): what the
        profiler's mode (``arcsub.profile.on_kaggle``) measures on
  ``profile_mode_requested(input_root)``  whether the settings ask for the profiler's mode
  ``RunRequest`` / ``RUN_REQUEST_FILE``  what the simulator or evaluate asks of a run
        (``arcsub-run.json`` among the inputs, ``inputs.py``)
  ``results_dir(working)``  the per-task result files a run leaves (``results.py``)

The pieces: ``inputs.py`` (what is under the input root, placeholder or hidden set),
``plan.py`` (deadline, slices, what a slice buys), ``supervisor.py`` (workers, faults,
merging), ``worker.py`` (one per GPU: engine, fine-tuning, inference per task),
``results.py`` (result files and the always-valid submission), ``report.py``.
"""

from .inputs import FAULTS, INSTALL_PLAN, RUN_REQUEST_FILE, RunRequest, RunRequestError, read_run_request
from .results import results_dir
from .run import KernelError, PreparedRun, kernel_main, prepare_run, profile_mode_requested, run_kernel
from .stack import engine_environment

__all__ = [
    "FAULTS",
    "INSTALL_PLAN",
    "RUN_REQUEST_FILE",
    "KernelError",
    "PreparedRun",
    "RunRequest",
    "RunRequestError",
    "engine_environment",
    "kernel_main",
    "prepare_run",
    "profile_mode_requested",
    "read_run_request",
    "results_dir",
    "run_kernel",
]
