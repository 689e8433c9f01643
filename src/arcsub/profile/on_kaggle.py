"""The profiler's mode on Kaggle (``kernel.profile_machine = true`` in the bundle's
``arcsub.toml``): one push measures Kaggle's machine instead of solving, and
``arcsub profile plan --from profile.json`` projects a run from it.

``kernel/main.py`` hands the run here when the settings ask for it. The kernel
prepares the run as always (``arcsub.kernel.prepare_run``: the fallback submission
stays, the machine's settings and the workers' placement decided); then one GPU is
measured, in the serving dtype the competition profile sets.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from ..io import write_json_atomic
from ..kernel import kernel_main, prepare_run
from .measure import measure_profile

log = logging.getLogger("arcsub.kernel")


def measure_on_kaggle(
    input_root: str | os.PathLike = "/kaggle/input",
    working_root: str | os.PathLike = "/kaggle/working",
    temp_root: str | os.PathLike = "/kaggle/temp",
    *,
    environ: Mapping[str, str] = os.environ,
    started: float | None = None,
) -> dict:
    """The prepared run's machine measured into ``working/profile.json``; returns the
    report (also ``working/report.json``)."""
    run = prepare_run(input_root, working_root, temp_root, environ=environ, started=started)
    device, working = run.place.device, run.working
    log.info("profile mode: measuring %s on %s (the fallback submission stays)", run.model_dir, run.gpus or device)
    measure_profile(
        run.model_dir,
        working / "profile.json",
        backend=run.config.inference.backend,
        device=device,
        quick=device == "cpu",  # a CPU dry run proves the path; the GPU run measures the full grid
        config=run.config,
        notify=lambda line: log.info("%s", line),
        progress=False,
    )  # fmt: skip
    report = {"mode": "profile", "profile_json": str(working / "profile.json"), "gpus": run.gpus,
              "elapsed_s": round(time.time() - run.budget.start, 1)}  # fmt: skip
    write_json_atomic(working / "report.json", report, indent=1)
    return report


def profile_kernel_main(input_root: str, working_root: str, temp_root: str, *, started: float | None = None) -> int:
    """What ``kernel/main.py`` calls in the profiler's mode: the kernel's console, log
    and exit code around :func:`measure_on_kaggle`."""
    return kernel_main(input_root, working_root, temp_root, started=started, run=measure_on_kaggle)
