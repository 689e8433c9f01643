"""Evaluation: the kernel's pipeline on tasks with known solutions (``arcsub evaluate``),
and evaluations side by side (``arcsub compare``).

    run.py       one evaluation: the Kaggle-like tree, the kernel under the budget, resume
    budget.py    the seconds each task gets: given, or what a competition profile buys
    metrics.py   per-task and overall metrics from the kernel's results and predictions
    report.py    evaluation.json, evaluation.md and the screen summary
    compare.py   several evaluations: table, paired statistics, verdict (``arcsub compare``)
"""

from .budget import DEFAULT_MACHINE, DEFAULT_TASK_S
from .compare import (
    compare_evaluations,
    comparison_text,
    load_evaluation,
    write_comparison_json,
    write_comparison_markdown,
)
from .compare_plot import plot_comparison
from .run import EvaluationOptions, evaluate

__all__ = [
    "DEFAULT_MACHINE",
    "DEFAULT_TASK_S",
    "EvaluationOptions",
    "compare_evaluations",
    "comparison_text",
    "evaluate",
    "load_evaluation",
    "plot_comparison",
    "write_comparison_json",
    "write_comparison_markdown",
]
