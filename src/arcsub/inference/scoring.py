"""Step 2: score each candidate under more augmentations.

For every test input, the best ``max_candidates`` grids by vote are scored: each one
is placed as the answer of M augmented prompts (augmentations drawn independently of
step 1's), and the model's log-likelihood of its tokens (the grid and the end-of-turn
marker) is read from the prompt log-probabilities. A candidate the model believes in
from every angle beats one that a single orientation happened to produce; summing
log-likelihoods over augmentations is the product of probabilities the 2024 winners
used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..augment import Augmentation
from ..config import Config
from ..prompts import PromptBuilder, PromptTooLong
from ..selection import Candidate, Prediction, vote
from ..tasks import Grid, Pair, Task
from .airv import configured_plan, log_left_out
from .backend import Backend, ScoreRequest


@dataclass(frozen=True)
class ScoreJob:
    task_id: str
    test_index: int
    candidate: int  # index into that test input's candidate list
    augmentation: Augmentation
    request: ScoreRequest


def with_answer(task: Task, test_index: int, grid: Grid) -> Task:
    """The task with ``grid`` as the output of test input ``test_index``."""
    test = list(task.test)
    test[test_index] = Pair(test[test_index].input, grid)
    return Task(task.id, task.train, tuple(test))


def score_jobs(
    task: Task,
    candidates: Sequence[Sequence[Candidate]],
    builder: PromptBuilder,
    config: Config,
    adapter: str | None,
    max_seq_len: int | None,
) -> tuple[list[ScoreJob], list[str]]:
    plan = configured_plan(task, config, config.inference.score_augmentations, purpose="score")
    jobs, skipped = [], []
    for test_index, ranked in enumerate(candidates):
        for c_index, candidate in enumerate(ranked):
            answered = with_answer(task, test_index, candidate.grid)
            for aug in plan:
                try:
                    prompt = builder.fit(answered, test_index, aug, max_seq_len=max_seq_len)
                except PromptTooLong as exc:
                    skipped.append(str(exc))
                    continue
                tokens = builder.tokenize(prompt)
                split = tokens.prompt_length
                request = ScoreRequest(tuple(tokens.input_ids[:split]), tuple(tokens.input_ids[split:]), adapter)
                jobs.append(ScoreJob(task.id, test_index, c_index, aug, request))
    return jobs, skipped


def score_candidates(
    tasks: Sequence[Task],
    predictions: dict[str, list[list[Prediction]]],
    backend: Backend,
    builder: PromptBuilder,
    config: Config,
    adapters: dict[str, str] | None = None,
    max_seq_len: int | None = None,
) -> dict[str, list[list[Candidate]]]:
    """Step 2 for ``tasks`` in one engine call. Each returned candidate carries its
    votes and ``scores`` = {augmentation key: log-likelihood of the grid}."""
    ranked = {t.id: [vote(preds)[: config.inference.max_candidates] for preds in predictions[t.id]] for t in tasks}
    jobs: list[ScoreJob] = []
    left_out: list[str] = []
    for task in tasks:
        task_jobs, skipped = score_jobs(
            task, ranked[task.id], builder, config, (adapters or {}).get(task.id), max_seq_len
        )
        jobs += task_jobs
        left_out += skipped
    log_left_out("scoring prompt", left_out)
    scores = backend.score([job.request for job in jobs]) if jobs else []
    for job, token_logprobs in zip(jobs, scores, strict=True):
        candidate = ranked[job.task_id][job.test_index][job.candidate]
        candidate.scores[job.augmentation.key] = sum(token_logprobs)
    return ranked
