"""Evaluation: the kernel's pipeline on tasks with known solutions (``arcsub evaluate``),
and evaluations side by side (``arcsub compare``).

    run.py       one evaluation: the Kaggle-like tree, the kernel under the budget, resume
    budget.py    the seconds each task gets: given, or what a competition profile buys
    metrics.py   per-task and overall metrics from the kernel's results and predictions
    report.py    evaluation.json, evaluation.md and the screen summary
    compare.py   several evaluations: table, paired statistics, verdict (``arcsub compare``)
"""
