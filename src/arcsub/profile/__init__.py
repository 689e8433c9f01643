"""The timing-budget profiler: what Kaggle's budget buys per task, per model.

The public entry
  ``measure_profile(model, out_path, backend=, device=, precision=, quick=)``  measure
        load, engine start, TTFT step time and memory against sequence length,
        generation and scoring throughput on this machine; fit a cost model; write
        ``profile.json`` (``measure.py``)
  ``load_cost_model(profile_json)``  the fitted :class:`CostModel` of a profile.json
  ``analytic_cost_model(config, label=, gpu_name=, ...)``  the estimate from FLOPs and
        bandwidth when nothing was measured (``analytic.py``)
  ``cost_model_for(model, profile)``  either of them for a competition profile
  ``plan_run(profile, cost_model, ..., tokens_per_step=)``  budget, tasks per worker,
        time per task, and what it buys: TTFT steps (one sequence per step, and packed),
        tokens per hour and predictions per task (``project.py``)
  ``fit_measured(paths)``  per-step and per-layer overhead of a TTFT step (and a rate
        when the arithmetic shows) from measured steps of several models on one device;
        ``recorded_fits()`` the fits shipped with arcsub, which the analytic estimate
        takes its step overhead from (``step_fit.py``; FLOPs: ``flops.py``)
  ``plot_plans(plans, png)``  the plan as a picture (``plot.py``)
  ``profile_kernel_main(input_root, working_root, temp_root)``  the profiler's mode on
        Kaggle (``kernel.profile_machine``): what ``kernel/main.py`` calls instead of the
        kernel's run; it prepares the run through the kernel and measures (``on_kaggle.py``)

Only ``measure_profile`` imports torch and the engines, and only ``plot_plans``
matplotlib: planning from a profile.json (and fitting) stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..competitions import Competition
from .analytic import analytic_cost_model
from .cost_model import CostModel, ProfilingError, cost_model_from_dict, load_cost_model, load_profile_json
from .measure import MeasureGrid, check_measurable, measure_profile, model_config
from .on_kaggle import measure_on_kaggle, profile_kernel_main
from .plot import plot_plans
from .project import compare_text, markdown, plan_dict, plan_run, plan_text
from .step_fit import StepCostFit, fit_measured, record_fit, recorded_fits, write_fits


def cost_model_for(
    model: str | os.PathLike,
    profile: Competition,
    *,
    lora_rank: int = 32,
    plan_tokens: int = 4096,
    step_fits: list[StepCostFit] | None = None,
    label: str | None = None,
) -> CostModel:
    """A measured cost model for a ``*.json`` profile file; otherwise the analytic estimate
    for ``model`` (a model folder, labelled ``label`` else by its name, or a candidate
    name) on ``profile``'s machine, its step overhead from ``step_fits`` (default: the
    recorded fits)."""
    if str(model).endswith(".json") or (Path(model).is_file()):
        return load_cost_model(model)
    label, cfg, _ = model_config(model, label)
    m = profile.machine
    return analytic_cost_model(
        cfg,
        label=label,
        gpu_name=m.gpu_name,
        accelerator=m.accelerator,
        cpus=max(1, m.cpus // m.worker_count),
        gpu_memory_gb=m.gpu_memory_gb if m.accelerator == "cuda" else None,
        vllm_memory_share=profile.plan.vllm_memory_share,
        lora_rank=lora_rank,
        plan_tokens=plan_tokens,
        step_fits=step_fits,
    )


__all__ = [
    "CostModel",
    "MeasureGrid",
    "ProfilingError",
    "StepCostFit",
    "analytic_cost_model",
    "check_measurable",
    "compare_text",
    "cost_model_for",
    "cost_model_from_dict",
    "fit_measured",
    "load_cost_model",
    "load_profile_json",
    "markdown",
    "measure_on_kaggle",
    "measure_profile",
    "plan_dict",
    "plan_run",
    "plan_text",
    "plot_plans",
    "profile_kernel_main",
    "record_fit",
    "recorded_fits",
    "write_fits",
]
