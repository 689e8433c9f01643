"""The Kaggle kernel's run: budget plan, one worker per GPU,
results merged into an always-valid ``submission.json``, and the run report.

The public entry
  ``kernel_main(input_root, working_root, temp_root)``  what ``kernel/main.py`` calls
  ``run_kernel(...)``  the run itself (``run.py``); returns the report

The pieces: ``inputs.py`` (what is under the input root, placeholder or hidden set),
``plan.py`` (deadline, slices, what a slice buys), ``supervisor.py`` (workers, faults,
merging), ``worker.py`` (one per GPU: engine, fine-tuning, inference per task),
``results.py`` (result files and the always-valid submission), ``report.py``.
"""

from .inputs import INSTALL_PLAN
from .run import KernelError, kernel_main, run_kernel
from .stack import engine_environment

__all__ = [
    "INSTALL_PLAN",
    "KernelError",
    "engine_environment",
    "kernel_main",
    "run_kernel",
]
