"""The final attempts from stored results: 2 per test input, and submission.json, offline.

For each task, candidates come from the deepest step on disk (step 2's scored
candidates, else step 1's votes), ranked by ``inference.selection``; the rule-based
baseline's candidates and then the test input itself fill any empty attempt, so the
submission is always complete and valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..baseline import baseline_predictions
from ..errors import ArcsubError
from ..selection import Candidate, choose_attempts, rank_candidates, vote
from ..submission import make_submission, validate_submission, write_submission
from ..tasks import Grid, Task
from .store import RunStore


@dataclass
class Selection:
    attempts: dict[str, list[tuple[Grid, Grid]]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)  # task id -> score | sample | fallback


def _with_fallbacks(ranked: list[Candidate], extra: list[Candidate]) -> list[Candidate]:
    seen = {c.grid for c in ranked}
    return ranked + [c for c in extra if c.grid not in seen]


def select_attempts(tasks: Sequence[Task], store: RunStore, method: str = "combined") -> Selection:
    result = Selection()
    for task in tasks:
        fallbacks = [vote(preds) for preds in baseline_predictions(task)]
        if store.has("score", task.id):
            ranked = [rank_candidates(c, method) for c in store.load_scores(task.id)]
            result.source[task.id] = "score"
        elif store.has("sample", task.id):
            ranked = [vote(preds) for preds in store.load_sample(task.id)]
            result.source[task.id] = "sample"
        else:
            ranked = [[] for _ in task.test]
            result.source[task.id] = "fallback"
        result.attempts[task.id] = [
            choose_attempts(_with_fallbacks(r, f), pair.input)
            for r, f, pair in zip(ranked, fallbacks, task.test, strict=True)
        ]
    return result


def write_selected_submission(
    tasks: Sequence[Task], store: RunStore, out: str | os.PathLike, method: str = "combined"
) -> tuple[Selection, dict]:
    """Select, check and write ``submission.json`` atomically; returns the selection and
    the submission written."""
    selection = select_attempts(tasks, store, method)
    submission = make_submission(selection.attempts)
    problems = validate_submission(submission, tasks)
    if problems:  # cannot happen for a complete selection; never write a bad file
        raise ArcsubError(f"{out}: would be invalid: {problems[0]}")
    write_submission(out, submission)
    return selection, submission
