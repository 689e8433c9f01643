import json
import os

import pytest

from arcsub.errors import SubmissionError
from arcsub.selection import Prediction
from arcsub.submission import (
    load_solution_tasks,
    make_submission,
    prediction_metrics,
    score_submission,
    validate_submission,
    write_submission,
)
from arcsub.tasks import Pair, Task, load_tasks, tasks_to_challenges, tasks_to_solutions

X, Y, Z = ((1, 1),), ((2,),), ((3,), (3,))
TASKS = [
    Task("t1", (Pair(X, Y),), (Pair(X, Y), Pair(Y, Z))),
    Task("t2", (Pair(X, Y),), (Pair(Z, X),)),
]


def test_score_counts_either_attempt_and_averages_over_test_outputs():
    sub = make_submission({"t1": [(Z, Y), (Y, Y)], "t2": [(X, Z)]})
    result = score_submission(sub, TASKS)
    assert result.per_task == {"t1": [True, False], "t2": [True]}
    assert result.solved == 2 and result.total == 3 and result.score == pytest.approx(2 / 3)
    assert result.solved_tasks == ["t2"]
    assert score_submission({}, TASKS).score == 0.0


def test_validator_finds_every_problem():
    sub = make_submission({"t1": [(X, Y)], "t3": [(X, X)]})
    sub["t1"][0]["attempt_2"] = [[1, 2], [3]]
    problems = validate_submission(sub, TASKS)
    assert "task t2: missing" in problems
    assert "task t3: not in the challenges" in problems
    assert "task t1: has 1 entries for 2 test inputs" in problems
    sub = make_submission({"t1": [(X, Y), (X, Y)], "t2": [(X, Y)]})
    del sub["t2"][0]["attempt_2"]
    sub["t1"][1]["attempt_1"] = [[1, 2], [3]]
    problems = validate_submission(sub, TASKS)
    assert problems == [
        "task t1 test 1 attempt_1 row 1: has 1 cells but row 0 has 2; grids must be rectangular",
        "task t2 test 0: missing attempt_2",
    ]
    assert validate_submission(make_submission({"t1": [(X, Y), (X, Y)], "t2": [(X, Y)]}), TASKS) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "submission.json"
    good = make_submission({"t2": [(X, Y)]})
    write_submission(path, good)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_submission(path, make_submission({"t2": [(Z, Z)]}))
    assert json.loads(path.read_text()) == good
    assert [p.name for p in tmp_path.iterdir()] == ["submission.json"]  # no temp file left behind


def test_prediction_metrics_follow_their_definitions():
    preds = {
        # t1 test 0 (solution Y): Y twice, X three times -> voted X first, Y second
        # t1 test 1 (solution Z): one unparsable, one wrong shape
        "t1": [
            [Prediction(Y), Prediction(X), Prediction(X), Prediction(Y), Prediction(X)],
            [Prediction(None), Prediction(Y)],
        ],
        # t2 test 0 (solution X): exact once
        "t2": [[Prediction(X)]],
    }
    m = prediction_metrics(preds, TASKS)
    assert m.predictions == 8 and m.test_outputs == 3 and m.n == 5
    assert m.accuracy == pytest.approx(3 / 8)
    assert m.pass_n == pytest.approx(2 / 3)
    assert m.vote_1 == pytest.approx(1 / 3)
    assert m.vote_2 == pytest.approx(2 / 3)
    assert m.unanswered == pytest.approx(1 / 8)
    # shapes: Y (1x1) is right for t1/0 twice, X (1x2) wrong thrice; t1/1 wants 2x1; t2 wants 1x2
    assert m.correct_size == pytest.approx(3 / 8)


def test_solutions_file_needs_its_challenges(tmp_path):
    tasks = load_tasks("arc1/evaluation[:2]").tasks
    (tmp_path / "x_solutions.json").write_text(json.dumps(tasks_to_solutions(tasks)))
    with pytest.raises(SubmissionError, match="needs the matching challenges file"):
        load_solution_tasks(str(tmp_path / "x_solutions.json"))
    (tmp_path / "x_challenges.json").write_text(json.dumps(tasks_to_challenges(tasks)))
    assert load_solution_tasks(str(tmp_path / "x_solutions.json")) == tasks
    with pytest.raises(SubmissionError, match="lack test outputs"):
        (tmp_path / "only.json").write_text(json.dumps(tasks_to_challenges(tasks)))
        load_solution_tasks(str(tmp_path / "only.json"))
