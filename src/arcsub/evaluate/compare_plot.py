"""Evaluations as a picture: Kaggle score against the wall clock a task took, one
labelled point per evaluation. Up and to the left is better; points at the same x
were bought at the same cost."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .compare import Comparison

WIDE_RANGE = 10.0  # x spans more than this factor: a log axis, so the cheap runs do not pile up


def plot_comparison(comparison: Comparison, path: str | os.PathLike) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_bytes_atomic

    rows = comparison.rows
    seconds = [r["seconds_per_task"] for r in rows]
    scores = [r["shared_score"] for r in rows]
    budgets = sorted({r["budget_per_task_s"] for r in rows})
    log_axis = use_log_axis(seconds + budgets)
    fig, ax = plt.subplots(figsize=(8, 5))
    for budget in budgets:
        ax.axvline(budget, color="#888888", linestyle=":", zorder=1)
        ax.text(
            budget,
            0.98,
            f" budget {budget:g} s",
            transform=ax.get_xaxis_transform(),  # x in data, y as a share of the axes' height
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="#555555",
        )
    ax.scatter(seconds, scores, color="#3b7dd8", zorder=3)
    for row, x, y in zip(rows, seconds, scores, strict=True):
        # Points on the right get their label on their left, so no label runs off the plot.
        right = _position(x, seconds + budgets, log_axis) > 0.5
        ax.annotate(
            row["label"],
            (x, y),
            textcoords="offset points",
            xytext=(-6, 4) if right else (6, 4),
            ha="right" if right else "left",
            fontsize=8,
        )
    ax.margins(x=0.1)
    if log_axis:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)  # a linear axis from zero, so 55 s and 60 s do not look far apart
    ax.set_xlabel("seconds per task (wall clock)")
    ax.set_ylabel(_score_label(comparison))
    top = max(scores)
    ax.set_ylim(0, max(0.05, min(1.0, top * 1.15 + 0.02)))
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(_title(comparison), fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def use_log_axis(seconds: list[float]) -> bool:
    return min(seconds) > 0 and max(seconds) / min(seconds) > WIDE_RANGE


def _position(x: float, xs: list[float], log_axis: bool) -> float:
    """Where ``x`` lies between the smallest and largest of ``xs``, 0 to 1, on the axis's scale."""
    scale = math.log if log_axis else float
    low, high = scale(min(xs)), scale(max(xs))
    return (scale(x) - low) / (high - low) if high > low else 0.0


def _score_label(comparison: Comparison) -> str:
    if comparison.task_sets_differ:
        return f"Kaggle score on the {len(comparison.shared_tasks)} shared tasks"
    return "Kaggle score"


def _title(comparison: Comparison) -> str:
    sources = sorted({r["data_source"] for r in comparison.rows})
    budgets = sorted({r["budget_per_task_s"] for r in comparison.rows})
    budget = f"budget {budgets[0]:g} s per task" if len(budgets) == 1 else "budgets per task differ"
    return f"score against cost: {', '.join(sources)} ({len(comparison.shared_tasks)} tasks), {budget}"
