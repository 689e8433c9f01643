"""Predictions, voting, and the choice of 2 attempts per test input.

A ``Prediction`` is one sampled answer, already mapped back to the task's own frame
(the augmentation inverted), or ``grid=None`` when the model's text did not parse.
Voting groups identical grids across augmentations and samples and ranks the groups
by count, then by mean log-probability, then by first appearance (deterministic).

Predictions files hold ``{task_id: [[prediction, ...] per test input]}`` with each
prediction as ``{"grid": [[...]] | null, "logprob": float | null, "aug": key}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SubmissionError
from .io import read_json, write_json_atomic
from .tasks import Grid, TaskFormatError, check_grid, grid_to_list


@dataclass(frozen=True)
class Prediction:
    grid: Grid | None  # in the task's own frame; None = unanswered (unparsable)
    logprob: float | None = None  # mean log-probability per answer token
    augmentation: str = "id"

    def to_json(self) -> dict[str, Any]:
        return {"grid": grid_to_list(self.grid), "logprob": self.logprob, "aug": self.augmentation}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Prediction:
        if not isinstance(value, dict) or "grid" not in value:
            raise SubmissionError(f"{where}: expected {{'grid': ..., 'logprob': ..., 'aug': ...}}")
        try:
            grid = None if value["grid"] is None else check_grid(value["grid"], where)
        except TaskFormatError as exc:
            raise SubmissionError(str(exc)) from None
        logprob = value.get("logprob")
        return cls(grid, None if logprob is None else float(logprob), str(value.get("aug", "id")))


@dataclass
class Candidate:
    """A distinct grid with the evidence for it."""

    grid: Grid
    count: int = 0
    logprobs: list[float] = field(default_factory=list)
    first_seen: int = 0
    # Filled by later inference steps (e.g. augmentation scoring), keyed by step name.
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else -math.inf

    @property
    def mean_score(self) -> float:
        """Mean log-likelihood of the grid over the augmentations it was scored under."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else -math.inf

    def to_json(self) -> dict[str, Any]:
        return {
            "grid": grid_to_list(self.grid),
            "count": self.count,
            "logprobs": self.logprobs,
            "first_seen": self.first_seen,
            "scores": self.scores,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> Candidate:
        try:
            return cls(
                check_grid(value["grid"], where),
                int(value["count"]),
                [float(x) for x in value.get("logprobs", [])],
                int(value.get("first_seen", 0)),
                {str(k): float(v) for k, v in value.get("scores", {}).items()},
            )
        except (KeyError, TypeError, ValueError, TaskFormatError) as exc:
            raise SubmissionError(f"{where}: not a candidate ({exc})") from None


def vote(predictions: Iterable[Prediction]) -> list[Candidate]:
    """Group identical grids; rank by count, then mean log-probability, then first seen."""
    groups: dict[Grid, Candidate] = {}
    for index, prediction in enumerate(predictions):
        if prediction.grid is None:
            continue
        candidate = groups.setdefault(prediction.grid, Candidate(prediction.grid, first_seen=index))
        candidate.count += 1
        if prediction.logprob is not None:
            candidate.logprobs.append(prediction.logprob)
    return sorted(groups.values(), key=vote_order)


def vote_order(c: Candidate) -> tuple:
    """Sort key: more votes first, then higher mean log-probability, then first seen."""
    return (-c.count, -c.mean_logprob, c.first_seen)


SELECTION_METHODS = ("votes", "scores", "combined", "hits")


def rank_candidates(candidates: Sequence[Candidate], method: str = "combined") -> list[Candidate]:
    """Order candidates for the final 2 attempts.

    ``votes``     count, then mean log-probability of the samples (as ``vote``)
    ``scores``    mean log-likelihood under the scoring augmentations
    ``combined``  mean log-likelihood + log of the candidate's share of the votes: both
                  terms are log-probabilities, one from the model's judgement of the
                  finished grid, one from how often sampling produced it
    ``hits``      the number of samples that produced it + its mean log-likelihood under
                  the scoring augmentations (the ARC Prize 2025 winners' rule; one set of
                  augmentations is shared by all candidates, so the means compare)
    Unscored candidates rank after scored ones under ``scores`` and ``combined``.
    Ties fall back to the vote order.
    """
    by_votes = sorted(candidates, key=vote_order)
    if method == "votes":
        return by_votes
    if method not in SELECTION_METHODS:
        raise ValueError(f"unknown selection method {method!r}")
    total = sum(c.count for c in candidates) or 1

    def key(c: Candidate) -> float:
        if method == "scores" or c.count == 0:
            return c.mean_score
        if method == "hits":
            return c.count + c.mean_score
        return c.mean_score + math.log(c.count / total)

    # sorted() is stable: equal keys keep the vote order
    return sorted(by_votes, key=lambda c: (not c.scores, -key(c)))


def choose_attempts(ranked: Sequence[Candidate], fallback: Grid) -> tuple[Grid, Grid]:
    """The two best distinct grids; missing ones are filled with ``fallback`` (a
    valid grid, so the submission stays complete even when the model said nothing)."""
    grids = [c.grid for c in ranked[:2]]
    while len(grids) < 2:
        grids.append(fallback)
    return grids[0], grids[1]


# ---------------------------------------------------------------- files

PredictionSet = dict[str, list[list[Prediction]]]


def predictions_to_json(predictions: PredictionSet) -> dict[str, Any]:
    return {tid: [[p.to_json() for p in outs] for outs in per_test] for tid, per_test in predictions.items()}


def save_predictions(path: str | Path, predictions: PredictionSet) -> Path:
    return write_json_atomic(path, predictions_to_json(predictions))


def load_predictions(path: str | Path) -> PredictionSet:
    data = read_json(path, SubmissionError, missing="predictions file not found")
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: expected {{task_id: [[prediction, ...], ...]}}")
    result: PredictionSet = {}
    for tid, per_test in data.items():
        if not isinstance(per_test, list) or not all(isinstance(outs, list) for outs in per_test):
            raise SubmissionError(f"{path}: task {tid}: expected a list (per test input) of lists of predictions")
        result[tid] = [
            [Prediction.from_json(p, f"{path}: task {tid} test {i} prediction {j}") for j, p in enumerate(outs)]
            for i, outs in enumerate(per_test)
        ]
    return result
