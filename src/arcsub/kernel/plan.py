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

Within a slice: inference is reserved first, at its measured cost per cell (the
first task, before any measurement: ``1 - kernel.train_share`` of the slice); the
rest trains. Its step count comes from the measured seconds per step per cell, so the
learning-rate schedule (warm-up, then decay) ends with the slice instead of being cut
at a high rate. When inference itself would not fit, the slice buys fewer augmented
prompts (never fewer than ``kernel.min_augmentations``) and no scoring.
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
    """Measured costs of one worker: a fine-tuning step, and a task's inference at the
    full prediction count, each against the task's size in cells."""

    step: LinearCost = field(default_factory=LinearCost)
    inference: LinearCost = field(default_factory=LinearCost)

    def record_training(self, cells: int, steps: int, seconds: float) -> None:
        if steps > 0:
            self.step.add(cells, seconds / steps)

    def record_inference(self, cells: int, seconds: float, share: float) -> None:
        """``share``: the fraction of the full prediction count the task ran."""
        if share > 0:
            self.inference.add(cells, seconds / share)


@dataclass
class TaskPlan:
    deadline: float
    train_deadline: float
    steps: int  # 0: no fine-tuning for this task
    augmentations: int
    scoring: bool
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "slice_s": round(self.deadline - time.time(), 1),
            "steps": self.steps,
            "augmentations": self.augmentations,
            "scoring": self.scoring,
            "reason": self.reason,
        }


def plan_task(
    cells: int,
    slice_s: float,
    costs: CostModel,
    settings: KernelConfig,
    *,
    fine_tune: bool,
    augmentations: int,
    scoring: bool,
    now: float | None = None,
) -> TaskPlan:
    """What one task's slice buys (see the module docstring)."""
    now = time.time() if now is None else now
    deadline = now + slice_s
    measured = costs.inference.known
    infer_s = costs.inference.predict(cells) if measured else (1 - settings.train_share) * slice_s
    share, reason = 1.0, ""
    # Inference that would not fit even with no training: fewer prompts, no scoring.
    if infer_s > slice_s and measured:
        share = max(settings.min_augmentations / augmentations, slice_s / infer_s)
        augmentations = max(settings.min_augmentations, math.floor(augmentations * share))
        scoring, infer_s, reason = False, infer_s * share, "slice too short for full inference"
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
        scoring=scoring,
        reason=reason,
    )
