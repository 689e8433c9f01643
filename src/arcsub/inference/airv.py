"""Step 1, AIRV: augment, infer, reverse, vote.

For each test input: K augmented prompts (the identity, then the other dihedral
transforms with colour permutations and shuffled train orders), n completions each,
each parsed into a grid (unparsable or cut off -> unanswered, never a crash), mapped
back through the inverse augmentation. Voting happens later (``arcsub.selection``),
over the predictions this step writes.

All prompts of all tasks given go to the engine in one call: the engine batches and
shares prefixes far better than a loop of small calls.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..augment import Augmentation, augmentation_plan
from ..config import Config
from ..encoding import GridParseError
from ..prompts import PromptBuilder, PromptTooLong
from ..selection import Prediction
from ..tasks import MAX_SIDE, Task
from .backend import Backend, Completion, GenerationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleJob:
    task_id: str
    test_index: int
    augmentation: Augmentation
    request: GenerationRequest


def answer_side_bounds(task: Task, test_index: int, margin: int) -> tuple[int, int]:
    """Upper bounds on the answer's rows and columns from the train pairs: the largest
    train output, or the test input scaled like the most-growing train pair, plus a
    margin; never above 30."""
    test_rows, test_cols = len(task.test[test_index].input), len(task.test[test_index].input[0])
    bounds = []
    for axis, test_side in ((0, test_rows), (1, test_cols)):

        def side(grid, axis=axis):
            return len(grid) if axis == 0 else len(grid[0])

        growth = max(side(p.output) / side(p.input) for p in task.train)
        largest = max(side(p.output) for p in task.train)
        bounds.append(min(MAX_SIDE, max(largest, math.ceil(test_side * growth)) + margin))
    return bounds[0], bounds[1]


def answer_token_budget(builder: PromptBuilder, task: Task, test_index: int, margin: int) -> int:
    """Tokens the answer may need: the codec's text for a grid of the bounded size,
    plus the end-of-turn token and one spare."""
    rows, cols = answer_side_bounds(task, test_index, margin)
    widest = tuple(tuple(0 for _ in range(cols)) for _ in range(rows))
    return builder.count_tokens(builder.codec.encode(widest)) + 2


def full_answer_budget(builder: PromptBuilder) -> int:
    """Tokens a 30x30 answer needs (the largest ARC grid), with the end of turn and one spare."""
    widest = tuple(tuple(0 for _ in range(MAX_SIDE)) for _ in range(MAX_SIDE))
    return builder.count_tokens(builder.codec.encode(widest)) + 2


def configured_plan(task: Task, config: Config, count: int, *, purpose: str) -> list[Augmentation]:
    """``count`` augmentations for ``task`` as ``[augment]`` and the inference seed say;
    ``purpose`` keeps the plans of the two steps independent."""
    aug_cfg = config.augment
    return augmentation_plan(
        task,
        count,
        seed=config.inference.seed,
        keep_background=aug_cfg.keep_background,
        permute_colors=aug_cfg.permute_colors,
        shuffle_order=aug_cfg.shuffle_order,
        purpose=purpose,
    )


def sample_jobs(
    tasks: Sequence[Task],
    builder: PromptBuilder,
    config: Config,
    adapters: dict[str, str] | None = None,
    max_seq_len: int | None = None,
) -> tuple[list[SampleJob], list[str]]:
    """Every (task, test input, augmentation) prompt, and the reasons for any left out."""
    inf = config.inference
    jobs, skipped = [], []
    largest_answer = full_answer_budget(builder) if inf.answer_bound == "window" else 0
    for task in tasks:
        plan = configured_plan(task, config, inf.num_augmentations, purpose="sample")
        for test_index in range(len(task.test)):
            for aug in plan:
                budget = answer_token_budget(builder, aug.apply_task(task), test_index, inf.answer_margin)
                try:
                    prompt = builder.fit(
                        task, test_index, aug, with_answer=False, reserve_tokens=budget, max_seq_len=max_seq_len
                    )
                except PromptTooLong as exc:
                    skipped.append(str(exc))
                    continue
                max_tokens = budget
                if inf.answer_bound == "window":  # the room the window has left, up to a 30x30 answer
                    room = (max_seq_len or builder.config.max_seq_len) - len(prompt.token_ids)
                    max_tokens = max(budget, min(largest_answer, room))
                request = GenerationRequest(
                    prompt_ids=prompt.token_ids,
                    n=inf.samples_per_prompt,
                    max_tokens=max_tokens,
                    temperature=inf.temperature,
                    min_p=inf.min_p,
                    min_prob=inf.dfs_min_prob,
                    keep_greedy=inf.dfs_keep_greedy,
                    adapter=(adapters or {}).get(task.id),
                    seed=None if inf.temperature == 0 else inf.seed,
                )
                jobs.append(SampleJob(task.id, test_index, aug, request))
    return jobs, skipped


def log_left_out(what: str, reasons: Sequence[str]) -> None:
    """One warning for the prompts a call leaves out; every reason in the log file."""
    for reason in reasons:
        log.debug("%s left out: %s", what, reason)
    if reasons:
        log.warning("%d %s(s) left out (too long), e.g. %s", len(reasons), what, reasons[0])


def to_prediction(builder: PromptBuilder, augmentation: Augmentation, completion: Completion) -> Prediction:
    """Parse and un-augment one completion; a cut-off or unparsable answer is unanswered."""
    grid = None
    if completion.finish_reason == "stop":
        try:
            grid = augmentation.invert_grid(builder.codec.decode(completion.text))
        except GridParseError:
            grid = None
    return Prediction(grid, completion.mean_logprob if completion.logprobs else None, augmentation.key)


def sample(
    tasks: Sequence[Task],
    backend: Backend,
    builder: PromptBuilder,
    config: Config,
    adapters: dict[str, str] | None = None,
    max_seq_len: int | None = None,
    on_progress: Callable[[dict[str, list[list[Prediction]]]], None] | None = None,
) -> dict[str, list[list[Prediction]]]:
    """Step 1 for ``tasks`` in one engine call: ``{task_id: [[Prediction] per test input]}``.
    ``on_progress``: the engine gets the requests in pieces (``backend.piece``, as the
    deadline wrapper cuts them), and the predictions so far are handed over after each,
    so a worker stopped mid-step keeps what it already sampled."""
    jobs, skipped = sample_jobs(tasks, builder, config, adapters, max_seq_len)
    log_left_out("prompt", skipped)
    results = {task.id: [[] for _ in task.test] for task in tasks}
    step = getattr(backend, "piece", 0) if on_progress is not None else 0
    for start in range(0, len(jobs), step or max(1, len(jobs))):
        part = jobs[start : start + (step or len(jobs))]
        completions = backend.generate([job.request for job in part])
        for job, outs in zip(part, completions, strict=True):
            results[job.task_id][job.test_index] += [to_prediction(builder, job.augmentation, c) for c in outs]
        if on_progress is not None and any(completions):
            on_progress(results)
        if getattr(backend, "cut", False):
            break
    return results
