"""The kernel's smoke run of a built bundle in the simulator: the last step of
``arcsub bundle check`` (and of ``--over-image``), which the CLI hands to
``arcsub.bundle``'s checks as their ``smoke`` run."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ..bundle import CheckError
from .simulation import SimulationOptions, simulate


def smoke_run(
    build: Path, out: Path | None, budget_s: float, *, echo: Callable[[str], None], over_image: str | None = None
) -> dict:
    """The kernel's first Kaggle run (a placeholder test file → smoke mode) in the
    simulator, from the bundle alone (``over_image``: in a fresh copy of that image's
    replica, where the kernel installs the whole set). It fails unless the model
    answered at least one task: a smoke run on the fallback proves nothing."""
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="arcsub-bundle-check-"))
    where = f" over a fresh {over_image} replica copy (the kernel installs the whole set)" if over_image else ""
    echo(f"smoke run of the bundle's kernel in the simulator (placeholder tasks){where}, output in {out}")
    options = SimulationOptions(out=out, bundle=build, placeholder=True, budget_s=budget_s, over_image=over_image)
    report = simulate(options, echo=echo)
    if not report["passed"]:
        raise CheckError(f"the bundle's smoke run failed: {'; '.join(report['failures'])} (see {out}/logs/kernel.log)")
    kernel = report.get("kernel_report") or {}
    if kernel.get("mode") != "smoke":
        raise CheckError(f"the bundle's kernel made a {kernel.get('mode')} run of the placeholder, not its smoke run")
    by_model = tasks_by_model(kernel)
    if by_model < 1:
        raise CheckError(f"the smoke run's model answered no task (all on the fallback; see {out}/logs/kernel.log)")
    return {
        "out": str(out),
        "mode": kernel.get("mode"),
        "by_model": by_model,
        "score": ((report.get("submission") or {}).get("score") or {}).get("score"),
        "elapsed_s": report["run"]["elapsed_s"],
    }


def tasks_by_model(kernel_report: dict) -> int:
    """How many tasks the kernel's model answered: ``tasks.by_model``, or (reports that
    predate it) the per-task results whose source is not the fallback."""
    tasks = kernel_report.get("tasks") or {}
    if "by_model" in tasks:
        return int(tasks["by_model"])
    return sum(1 for stats in (kernel_report.get("per_task") or {}).values() if stats.get("source") != "fallback")
