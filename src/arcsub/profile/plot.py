"""The plan as a picture: one bar per (model, prompt length), one worker's time split
into start-up, TTFT, scoring and sampling, against the budget and the time limit."""

from __future__ import annotations

import os
from pathlib import Path

from .project import RunPlan

COLOURS = {"start-up": "#888888", "TTFT": "#3b7dd8", "scoring": "#e0a030", "sampling": "#4caf50"}


def plot_plans(plans: list[RunPlan], path: str | os.PathLike) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_bytes_atomic

    labels, segments = [], []
    for plan in plans:
        n = plan.tasks_per_worker
        for s in plan.stages:
            labels.append(
                f"{plan.model.label}\n{s.prompt_tokens}+{s.answer_tokens} tok: {s.steps} steps, {s.predictions} pred."
            )
            segments.append(
                {
                    "start-up": plan.fixed_s,
                    "TTFT": n * s.train_s,
                    "scoring": n * s.scoring_s,
                    "sampling": n * s.sampling_s,
                }
            )
    profile = plans[0].profile
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * len(labels)))
    for row, parts in enumerate(segments):
        left = 0.0
        for name, seconds in parts.items():
            hours = seconds / 3600
            ax.barh(row, hours, left=left, color=COLOURS[name], label=name if row == 0 else None)
            left += hours
    budget_h = plans[0].budget_s / 3600
    ax.axvline(budget_h, color="black", linestyle="--", label=f"budget {budget_h:.2f} h")
    ax.axvline(profile.time_limit_s / 3600, color="red", label=f"limit {profile.time_limit_s / 3600:g} h")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("hours per worker")
    ax.set_title(
        f"{profile.name}: {plans[0].tasks_per_worker} tasks per worker, {plans[0].workers} worker(s)", fontsize=10
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6 / max(1, len(labels))), ncol=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())
