"""The demo run: rule-based predictions on a named dataset, voted into a submission
that is written, validated, scored and drawn. It exercises the whole data path
(tasks -> predictions -> voting -> submission.json -> score -> pictures) with no
model, in seconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .baseline import baseline_predictions
from .errors import SubmissionError
from .io import write_json_atomic
from .render import render_task
from .selection import PredictionSet, choose_attempts, save_predictions, vote
from .submission import make_submission, prediction_metrics, score_submission, validate_submission, write_submission
from .tasks import load_tasks


@dataclass
class DemoResult:
    out_dir: Path
    score: float
    solved: int
    total: int
    metrics: dict
    pictures: list[Path]


def run_demo(data: str, out_dir: str | Path, *, render: int = 3) -> DemoResult:
    out_dir = Path(out_dir)
    tasks = load_tasks(data).tasks
    predictions: PredictionSet = {}
    attempts = {}
    for task in tqdm(tasks, desc="predicting", unit="task"):
        per_test = baseline_predictions(task)
        predictions[task.id] = per_test
        # Copying the test input is the fallback when no rule fits.
        attempts[task.id] = [choose_attempts(vote(preds), pair.input) for preds, pair in zip(per_test, task.test)]
    save_predictions(out_dir / "predictions.json", predictions)
    submission = make_submission(attempts)
    problems = validate_submission(submission, tasks)
    if problems:  # a bug, not a user error: the demo built the file itself
        raise SubmissionError("demo submission invalid: " + "; ".join(problems[:5]))
    write_submission(out_dir / "submission.json", submission)
    score = score_submission(submission, tasks)
    metrics = prediction_metrics(predictions, tasks).as_dict()
    write_json_atomic(
        out_dir / "score.json",
        {
            "data": data,
            "score": score.score,
            "solved": score.solved,
            "total": score.total,
            "solved_tasks": score.solved_tasks,
            "metrics": metrics,
        },
        indent=1,
    )
    # Draw solved tasks first: they show the whole path working.
    chosen = sorted(tasks, key=lambda t: not all(score.per_task[t.id]))[:render]
    pictures = [render_task(t, out_dir / f"{t.id}.png", attempts[t.id]) for t in chosen]
    return DemoResult(out_dir, score.score, score.solved, score.total, metrics, pictures)


def format_result(result: DemoResult) -> str:
    lines = [
        f"score {result.score:.4f} ({result.solved}/{result.total} test outputs solved)",
        "metrics " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()}),
        f"wrote {result.out_dir / 'submission.json'}, predictions.json, score.json",
    ]
    lines += [f"picture {p}" for p in result.pictures]
    return "\n".join(lines)
