"""Per-task and overall metrics of an evaluation.

A task's entry joins what the kernel left for it (its result file: attempts, the plan
followed, TTFT steps, stage times) with its predictions (step 1's samples, the vote)
and the solutions, which only this side of the evaluation sees. Kaggle's score counts
a test output solved when either of its two attempts is exact; the prediction metrics
are ``arcsub.submission.prediction_metrics`` (accuracy, pass_n, vote_1, vote_2,
correct size, unanswered).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..submission import prediction_metrics, score_submission
from ..tasks import Task

METRICS = ("accuracy", "pass_n", "vote_1", "vote_2", "correct_size", "unanswered")
UNFINISHED = "unfinished"  # no result from the kernel: the fallback's attempts are scored


def task_predictions(predictions_dir: Path, task_id: str) -> list:
    """Step 1's predictions the kernel kept for a task (none when it never got there)."""
    from ..inference import RunStore

    store = RunStore(predictions_dir / task_id)
    return store.load_sample(task_id) if store.has("sample", task_id) else []


def task_entry(task: Task, attempts: list[dict[str, Any]], result: dict | None, predictions: list) -> dict:
    """One task's line of the evaluation: score and metrics, and what the budget bought."""
    solved = score_submission({task.id: attempts}, [task]).per_task[task.id]
    metrics = prediction_metrics({task.id: predictions}, [task])
    stats = (result or {}).get("stats") or {}
    train = stats.get("train") or {}
    return {
        "score": sum(solved) / len(solved),
        "solved": sum(solved),
        "test_outputs": len(solved),
        **{name: getattr(metrics, name) for name in METRICS},
        "predictions": metrics.predictions,
        "ttft_steps": int(train.get("steps") or 0),
        "seconds": float(stats.get("seconds") or 0.0),
        "train_s": float(train.get("seconds") or 0.0),
        "infer_s": float(stats.get("infer_s") or 0.0),
        "source": (result or {}).get("source", UNFINISHED),
        "slice_s": (stats.get("plan") or {}).get("slice_s"),
    }


def overall(entries: dict[str, dict], tasks: Iterable[Task]) -> dict:
    """The evaluation's totals. The score is Kaggle's (solved test outputs over all test
    outputs); the prediction metrics weigh every test output alike, as the score does."""
    tasks = list(tasks)
    rows = [entries[t.id] for t in tasks]
    outputs = sum(r["test_outputs"] for r in rows)
    predictions = sum(r["predictions"] for r in rows)
    count = len(rows) or 1

    def per_output(name: str) -> float:  # pass_n, vote_*: shares of test outputs
        return sum(r[name] * r["test_outputs"] for r in rows) / outputs if outputs else 0.0

    def per_prediction(name: str) -> float:  # accuracy, correct size, unanswered: shares of predictions
        return sum(r[name] * r["predictions"] for r in rows) / predictions if predictions else 0.0

    by_model = sum(r["source"] not in ("fallback", UNFINISHED) for r in rows)
    return {
        "score": sum(r["solved"] for r in rows) / outputs if outputs else 0.0,
        "solved": sum(r["solved"] for r in rows),
        "test_outputs": outputs,
        **{name: per_output(name) for name in ("pass_n", "vote_1", "vote_2")},
        **{name: per_prediction(name) for name in ("accuracy", "correct_size", "unanswered")},
        "predictions": predictions,
        "tasks_by_model": by_model,
        "tasks_unfinished": sum(r["source"] == UNFINISHED for r in rows),
        "tasks_scored": sum(r["source"] == "score" for r in rows),  # attempts chosen after step 2
        "ttft_steps_per_task": round(sum(r["ttft_steps"] for r in rows) / count, 1),
        "predictions_per_task": round(predictions / count, 1),
        "seconds_per_task": round(sum(r["seconds"] for r in rows) / count, 1),
        "stage_seconds": {
            "finetune": round(sum(r["train_s"] for r in rows), 1),
            "inference": round(sum(r["infer_s"] for r in rows), 1),
            "total": round(sum(r["seconds"] for r in rows), 1),
        },
    }
