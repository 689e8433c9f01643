"""The budget: the kernel's deadline, each task's slice of the time left, and what a
slice buys (fine-tuning steps, predictions) from measured costs.

Deadline: the profile's time limit (or the simulator's budget) counted from the
kernel's start, minus the profile's safety margin. Tasks run longest first (fewest
left for the end, when a slow one would overrun) and go to whichever worker is free.

A task's slice: the worker time still available before the deadline over all
workers, shared among the tasks not yet started in proportion to their size (cells),
and never past the deadline. Because the slice is recomputed from the time actually
left whenever a task starts, a run that goes faster or slower than planned rescales
every later task: the budget is used, and not overrun.

Within a slice: inference is planned first, from measured costs per step-1 prompt and
per step-2 scored answer (``plan_inference``): up to ``kernel.infer_share`` of the
slice (all of it without fine-tuning), it buys the configured prompts per test input
(fewer when they do not fit, never fewer than ``kernel.min_augmentations``), then as
many of the configured candidates as the rest pays for. So the counts in
``[inference]`` are ceilings that the budget fills: a large slice gets them all, a
small one keeps its fine-tuning. On a worker's first task, before any measurement,
inference gets ``1 - kernel.train_share`` of the slice. The rest trains; its step count
comes from the measured seconds per step per cell, so the learning-rate schedule
(warm-up, then decay) ends with the slice instead of being cut at a high rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..config import KernelConfig


@dataclass
class Budget:
    start: float  # time.time() at the kernel's start
    limit_s: float  # the wall clock the run may use
    margin_s: float  # planned to finish this long before the limit

    @property
    def deadline(self) -> float:
        """The planned end; the hard stop is the limit itself."""
        return self.start + self.limit_s - min(self.margin_s, 0.5 * self.limit_s)

    @property
    def hard_stop(self) -> float:
        return self.start + self.limit_s

    def left(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)


def order_longest_first(weights: dict[str, float]) -> list[str]:
    return sorted(weights, key=lambda tid: (-weights[tid], tid))


def task_slice(weight: float, waiting_weight: float, now: float, deadline: float, busy_until: list[float]) -> float:
    """Seconds for a task starting now: its share of the worker time left.

    ``waiting_weight`` sums the weights of the tasks not started yet, this one
    included; ``busy_until`` holds, for every other live worker, when its current task
    should end (``now`` when idle)."""
    capacity = max(0.0, deadline - now) + sum(max(0.0, deadline - max(now, t)) for t in busy_until)
    share = capacity * weight / waiting_weight if waiting_weight > 0 else 0.0
    return max(0.0, min(share, deadline - now))


class LinearCost:
    """Seconds as ``a + b * cells``, fitted to a worker's own measurements.

    One measurement cannot tell fixed cost from cost per cell; it is split half and
    half, which errs on the safe side for the smaller tasks that follow (tasks run
    longest first). From sizes spread by at least ``MIN_SPREAD`` of their mean on, a
    least-squares line (kept non-negative), and never below the cheapest measurement per
    cell. Sizes closer than that are one size to the fit: two tasks of 126 and 127 cells
    whose times differ by noise would give a slope of seconds per cell, and every smaller
    task an inference time several times its own."""

    MIN_SPREAD = 0.25

    def __init__(self, keep: int = 12):
        self.points: list[tuple[float, float]] = []  # (cells, seconds)
        self.keep = keep

    @property
    def known(self) -> bool:
        return bool(self.points)

    def add(self, cells: float, seconds: float) -> None:
        if cells > 0 and seconds > 0:
            self.points = (self.points + [(float(cells), float(seconds))])[-self.keep :]

    def predict(self, cells: float) -> float:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if max(xs) - min(xs) < self.MIN_SPREAD * mean_x:
            return mean_y * (0.5 + 0.5 * cells / mean_x)
        slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread)
        fixed = max(0.0, mean_y - slope * mean_x)
        floor = min(y / x for x, y in self.points) * cells
        return max(fixed + slope * cells, floor)


@dataclass
class CostModel:
    """Measured costs of one worker against a task's size in cells: a fine-tuning step,
    a step-1 prompt (its completions, parsed), and a step-2 scored answer (one candidate
    under one augmentation). Each engine request is counted only when it finished, so a
    step cut by the deadline still measures what it did."""

    step: LinearCost = field(default_factory=LinearCost)
    prompt: LinearCost = field(default_factory=LinearCost)
    answer: LinearCost = field(default_factory=LinearCost)

    def record_training(self, cells: int, steps: int, seconds: float) -> None:
        if steps > 0:
            self.step.add(cells, seconds / steps)

    def record_inference(self, cells: int, work: dict[str, tuple[int, float]]) -> None:
        """``work``: ``{"sample": (prompts done, seconds), "score": (answers done, seconds)}``."""
        for step, cost in (("sample", self.prompt), ("score", self.answer)):
            done, seconds = work.get(step, (0, 0.0))
            if done > 0:
                cost.add(cells, seconds / done)


@dataclass(frozen=True)
class InferenceAsk:
    """What a task's inference would do with the whole budget: the configured counts."""

    tests: int  # test inputs
    augmentations: int  # step-1 prompts per test input
    candidates: int  # step-2 candidates scored per test input; 0: no scoring
    score_augmentations: int  # augmentations each candidate is scored under


@dataclass
class TaskPlan:
    deadline: float
    train_deadline: float
    steps: int  # 0: no fine-tuning for this task
    augmentations: int
    candidates: int  # 0: no scoring
    infer_s: float  # the seconds reserved for inference
    reason: str = ""

    @property
    def scoring(self) -> bool:
        return self.candidates > 0

    def to_dict(self) -> dict:
        return {
            "slice_s": round(self.deadline - time.time(), 1),
            "steps": self.steps,
            "augmentations": self.augmentations,
            "candidates": self.candidates,
            "infer_s": round(self.infer_s, 1),
            "reason": self.reason,
        }


def plan_inference(cells: int, limit_s: float, costs: CostModel, ask: InferenceAsk, settings: KernelConfig):
    """The step-1 prompts and step-2 candidates that fit ``limit_s`` at measured costs:
    prompts first (as many as asked if they fit, never fewer than
    ``kernel.min_augmentations``), then as many candidates as the rest pays for (none
    when fewer than 2 fit: scoring one candidate cannot change the order). Returns
    (augmentations, candidates, seconds, reason)."""
    prompt_s = costs.prompt.predict(cells) * ask.tests
    # Until a worker has scored once, an answer is assumed to cost a prompt.
    answer_cost = costs.answer if costs.answer.known else costs.prompt
    answer_s = answer_cost.predict(cells) * ask.tests * ask.score_augmentations
    fitting = math.floor(limit_s / prompt_s) if prompt_s > 0 else ask.augmentations
    augmentations = max(min(settings.min_augmentations, ask.augmentations), min(ask.augmentations, fitting))
    left = limit_s - augmentations * prompt_s
    candidates = min(ask.candidates, math.floor(left / answer_s)) if answer_s > 0 else ask.candidates
    candidates = candidates if candidates >= 2 else 0
    reason = ""
    if augmentations < ask.augmentations:
        reason = f"{augmentations} of {ask.augmentations} prompts fit the inference budget"
    elif candidates < ask.candidates:
        reason = f"{candidates} of {ask.candidates} candidates scored in the inference budget"
    return augmentations, candidates, augmentations * prompt_s + candidates * answer_s, reason


def plan_task(
    cells: int,
    slice_s: float,
    costs: CostModel,
    settings: KernelConfig,
    *,
    fine_tune: bool,
    ask: InferenceAsk,
    now: float | None = None,
) -> TaskPlan:
    """What one task's slice buys (see the module docstring)."""
    now = time.time() if now is None else now
    deadline = now + slice_s
    if costs.prompt.known:
        limit = settings.infer_share * slice_s if fine_tune else slice_s
        augmentations, candidates, infer_s, reason = plan_inference(cells, limit, costs, ask, settings)
    else:  # a worker's first task: the configured counts, cut by the deadline if need be
        augmentations, candidates, reason = ask.augmentations, ask.candidates, ""
        infer_s = (1 - settings.train_share) * slice_s if fine_tune else slice_s
    train_s = max(0.0, slice_s - infer_s)
    steps = 0
    if fine_tune:
        if not costs.step.known:
            steps = settings.max_steps  # the worker measures a probe first (worker.fine_tune_task)
        else:
            steps = min(settings.max_steps, int(train_s / costs.step.predict(cells)))
            if steps < settings.min_steps:
                reason = reason or f"{steps} steps affordable, fewer than kernel.min_steps"
                steps = 0
    return TaskPlan(
        deadline=deadline,
        train_deadline=now + train_s,
        steps=steps,
        augmentations=augmentations,
        candidates=candidates,
        infer_s=infer_s,
        reason=reason,
    )
