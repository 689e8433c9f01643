"""``submission.json``: writing, validating and scoring.

Format (ARC Prize on Kaggle): ``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``
with one dict per test input, in order; every task and both attempts present.

Scoring follows the competition: a test output counts as solved when either attempt
equals it exactly; the score is the mean over all test outputs.

Metrics over raw predictions (many sampled answers per test output), used to compare
models beyond the score:

``accuracy``
    share of all predictions that equal the solution exactly.
``pass_n``
    share of test outputs with at least one exact prediction among their n (n = the
    number of predictions per test output; reported as ``n``).
``vote_1``
    share of test outputs whose top-voted candidate (see ``selection.vote``) is exact.
``vote_2``
    share of test outputs with an exact grid among the top-2 voted candidates (the
    competition score when attempts come from voting alone).
``correct_size``
    share of all predictions whose shape equals the solution's.
``unanswered``
    share of all predictions that could not be parsed into a grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SubmissionError, TaskFormatError
from .io import read_json, write_json_atomic
from .selection import PredictionSet, vote
from .tasks import Grid, Task, check_grid, grid_shape, grid_to_list, load_tasks

Submission = dict[str, list[dict[str, list[list[int]]]]]
ATTEMPTS = ("attempt_1", "attempt_2")


def make_submission(attempts: Mapping[str, list[tuple[Grid, Grid]]]) -> Submission:
    """``{task_id: [(attempt_1, attempt_2) per test input]}`` -> the competition format."""
    return {
        tid: [{"attempt_1": grid_to_list(a1), "attempt_2": grid_to_list(a2)} for a1, a2 in per_test]
        for tid, per_test in attempts.items()
    }


def write_submission(path: str | Path, submission: Submission) -> Path:
    """Write atomically: a crash leaves the previous file (or none), never half of one."""
    return write_json_atomic(path, submission)


def load_submission(path: str | Path) -> Submission:
    data = read_json(path, SubmissionError, missing="submission file not found")
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: expected an object {{task_id: [{{attempt_1, attempt_2}}, ...]}}")
    return data


def validate_submission(submission: Any, tasks: Iterable[Task]) -> list[str]:
    """Every problem that would make Kaggle reject the file or lose points by form,
    one message each; an empty list means valid."""
    problems: list[str] = []
    if not isinstance(submission, dict):
        return ["the submission is not a JSON object keyed by task id"]
    expected = {task.id: task for task in tasks}
    for tid in sorted(set(expected) - set(submission)):
        problems.append(f"task {tid}: missing")
    for tid in sorted(set(submission) - set(expected)):
        problems.append(f"task {tid}: not in the challenges")
    for tid, task in expected.items():
        entries = submission.get(tid)
        if entries is None:
            continue
        if not isinstance(entries, list) or len(entries) != len(task.test):
            count = len(entries) if isinstance(entries, list) else type(entries).__name__
            problems.append(f"task {tid}: has {count} entries for {len(task.test)} test inputs")
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                problems.append(f"task {tid} test {i}: expected {{attempt_1, attempt_2}}")
                continue
            for name in ATTEMPTS:
                if name not in entry:
                    problems.append(f"task {tid} test {i}: missing {name}")
                    continue
                try:
                    check_grid(entry[name], f"task {tid} test {i} {name}")
                except TaskFormatError as exc:
                    problems.append(str(exc))
    return problems


@dataclass
class SubmissionScore:
    score: float  # mean over test outputs
    solved: int  # test outputs solved
    total: int  # test outputs
    per_task: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def solved_tasks(self) -> list[str]:
        return [tid for tid, outs in self.per_task.items() if all(outs)]


def score_submission(submission: Submission, tasks: Iterable[Task]) -> SubmissionScore:
    """Score against tasks that carry their test outputs; missing entries score 0."""
    per_task: dict[str, list[bool]] = {}
    for task in tasks:
        if not task.has_solutions:
            raise SubmissionError(f"task {task.id}: no solution to score against; pass a solutions file")
        entries = submission.get(task.id) or []
        results = []
        for i, pair in enumerate(task.test):
            entry = entries[i] if i < len(entries) and isinstance(entries[i], dict) else {}
            solution = grid_to_list(pair.output)
            results.append(any(entry.get(name) == solution for name in ATTEMPTS))
        per_task[task.id] = results
    total = sum(len(r) for r in per_task.values())
    solved = sum(sum(r) for r in per_task.values())
    return SubmissionScore(solved / total if total else 0.0, solved, total, per_task)


@dataclass
class PredictionMetrics:
    accuracy: float
    pass_n: float
    vote_1: float
    vote_2: float
    correct_size: float
    unanswered: float
    n: int  # most predictions seen for one test output
    test_outputs: int
    predictions: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def prediction_metrics(predictions: PredictionSet, tasks: Iterable[Task]) -> PredictionMetrics:
    """The metrics defined in the module docstring; test outputs without predictions
    count as unsolved (and contribute no predictions)."""
    outputs = exact = sized = unanswered = count = passed = top1 = top2 = most = 0
    for task in tasks:
        if not task.has_solutions:
            raise SubmissionError(f"task {task.id}: no solution to score against; pass a solutions file")
        per_test = predictions.get(task.id, [])
        for i, pair in enumerate(task.test):
            outputs += 1
            preds = per_test[i] if i < len(per_test) else []
            most = max(most, len(preds))
            count += len(preds)
            hits = [p.grid == pair.output for p in preds]
            exact += sum(hits)
            passed += any(hits)
            unanswered += sum(p.grid is None for p in preds)
            shape = grid_shape(pair.output)
            sized += sum(p.grid is not None and grid_shape(p.grid) == shape for p in preds)
            ranked = [c.grid for c in vote(preds)]
            top1 += pair.output in ranked[:1]
            top2 += pair.output in ranked[:2]

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    return PredictionMetrics(
        accuracy=share(exact, count),
        pass_n=share(passed, outputs),
        vote_1=share(top1, outputs),
        vote_2=share(top2, outputs),
        correct_size=share(sized, count),
        unanswered=share(unanswered, count),
        n=most,
        test_outputs=outputs,
        predictions=count,
    )


def load_solution_tasks(source: str, challenges: str | None = None) -> list[Task]:
    """Tasks with test outputs, from a dataset name, a task file that carries outputs,
    or a Kaggle solutions file (``{task_id: [grid, ...]}``) plus its challenges file
    (found beside it when not given)."""
    path = Path(source)
    if path.is_file() and "solutions" in path.name:
        challenges = challenges or str(path.with_name(path.name.replace("solutions", "challenges")))
        if not Path(challenges).is_file():
            raise SubmissionError(
                f"{source}: scoring needs the matching challenges file; pass `challenges` (looked for {challenges})"
            )
        return load_tasks(challenges, solutions=source).tasks
    tasks = load_tasks(source).tasks
    missing = [t.id for t in tasks if not t.has_solutions]
    if missing:
        raise SubmissionError(
            f"{source}: {len(missing)} task(s) lack test outputs (e.g. {missing[0]}); pass a solutions file"
        )
    return tasks
