import math

import pytest

from arcsub.errors import SubmissionError
from arcsub.selection import Prediction, choose_attempts, load_predictions, save_predictions, vote

A, B, C = ((1,),), ((2,),), ((3, 3),)


def test_vote_ranks_by_count_then_mean_logprob_then_first_seen():
    preds = [
        Prediction(B, -0.5),
        Prediction(A, -0.9),
        Prediction(None),
        Prediction(A, -0.1),
        Prediction(C, -0.2),
        Prediction(C, -0.3),
        Prediction(B, -0.4),
    ]
    ranked = vote(preds)
    # all three twice; mean log-probabilities: C -0.25, B -0.45, A -0.5
    assert [c.grid for c in ranked] == [C, B, A]
    assert ranked[2].count == 2 and math.isclose(ranked[2].mean_logprob, -0.5)
    ranked = vote(preds + [Prediction(A, -2.0)])
    assert [c.grid for c in ranked] == [A, C, B]  # count beats log-probability


def test_vote_orders_ties_by_logprob_and_then_first_seen():
    ranked = vote([Prediction(A, -1.0), Prediction(B, -0.5), Prediction(C), Prediction(A, -1.0)])
    assert [c.grid for c in ranked] == [A, B, C]
    ranked = vote([Prediction(B), Prediction(A)])
    assert [c.grid for c in ranked] == [B, A]


def test_choose_attempts_fills_with_fallback():
    assert choose_attempts(vote([Prediction(A), Prediction(B), Prediction(B)]), C) == (B, A)
    assert choose_attempts(vote([Prediction(A)]), C) == (A, C)
    assert choose_attempts([], C) == (C, C)


def test_predictions_file_round_trip(tmp_path):
    preds = {"t1": [[Prediction(A, -0.25, "rot90"), Prediction(None, None, "id")]], "t2": [[], [Prediction(C)]]}
    path = save_predictions(tmp_path / "p.json", preds)
    assert load_predictions(path) == preds


def test_bad_predictions_file_names_the_place(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"t1": [[{"grid": [[1, 12]]}]]}')
    with pytest.raises(SubmissionError, match="task t1 test 0 prediction 0 row 0 column 1"):
        load_predictions(path)
