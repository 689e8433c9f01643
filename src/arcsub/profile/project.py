"""Projecting a full hidden-set run from a cost model: what the budget buys per task.

The arithmetic, per worker (one per GPU):

  budget      = time limit − safety margin                       (the competition profile)
  per worker  = budget − model load − engine start               (once per worker)
  tasks       = ceil(hidden tasks / workers)
  per task    = per worker / tasks
  TTFT        = train share × per task      → steps  = TTFT / step seconds at T tokens
                packed (``tokens_per_step``): k = tokens_per_step // T sequences per
                step, timed as one sequence of k·T tokens → steps = TTFT / that, k·steps
                sequences; TTFT tokens per hour = tokens per step / step seconds
  inference   = the rest: scoring first (max_candidates × score_augmentations answers per
                test input, as configured), then sampling → predictions = what is left /
                seconds per prediction (a T-token prompt and an answer of A tokens)

With ``steps`` and ``predictions`` given, the projection goes the other way: the time
that plan needs, against the budget. Nothing here imports torch or numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..competitions import Competition
from ..config import InferenceConfig
from .cost_model import CostModel

# Typical ARC sizes (arc1/evaluation, minimal codec, SmolLM2 tokenizer; docs/benchmarks.md):
# whole prompt + answer median 1396 tokens, 95th percentile 5632; answer median 145 tokens
# (cells + rows + end of turn), 95th percentile 871; 419 test inputs over 400 tasks.
DEFAULT_PROMPT_TOKENS = (1400, 5600)
DEFAULT_ANSWER_TOKENS = 145
TEST_INPUTS_PER_TASK = 419 / 400
DEFAULT_TRAIN_SHARE = 0.68  # the 2024 report: ~3 h 55 of TTFT against ~1 h 50 of inference

TYPICAL_SIZES_NOTE = (
    "prompt lengths: arc1/evaluation whole prompts (minimal codec) have a median of 1396 tokens and a 95th "
    "percentile of 5632; answers a median of 145 tokens; 1.05 test inputs per task (docs/benchmarks.md)"
)


@dataclass
class PackedPlan:
    """The same TTFT time spent on packed steps (``finetune.tokens_per_step``)."""

    tokens_per_step: int
    sequences_per_step: int
    step_s: float
    steps: int
    memory_bytes: float | None
    extrapolated: bool = False  # k·T beyond the longest measured step

    @property
    def sequences(self) -> int:
        return self.steps * self.sequences_per_step

    def tokens_per_hour(self, length: int) -> float:
        return self.sequences_per_step * length * 3600 / self.step_s if self.step_s > 0 else 0.0


@dataclass
class StagePlan:
    """One prompt length's projection for one model."""

    prompt_tokens: int
    answer_tokens: int
    task_s: float  # time per task
    train_s: float  # TTFT time per task
    step_s: float
    steps: int  # TTFT steps per task the time buys (or the steps asked)
    prediction_s: float  # seconds per sampled prediction (batched)
    score_s: float  # seconds per scored answer (batched)
    scoring_s: float  # scoring time per task
    sampling_s: float  # sampling time per task
    predictions: int  # per task
    memory_bytes: float | None  # peak TTFT memory at this length
    memory_limit_bytes: float | None  # what training may use of one GPU
    extrapolated: list[str] = field(default_factory=list)
    total_s: float | None = None  # whole run per worker (fixed plan mode)
    packed: PackedPlan | None = None  # the TTFT time spent on packed steps instead

    @property
    def tokens_per_hour(self) -> float:
        """TTFT tokens per hour on one worker, one sequence per step."""
        return self.prompt_tokens * 3600 / self.step_s if self.step_s > 0 else 0.0

    @property
    def fits_memory(self) -> bool | None:
        if self.memory_bytes is None or self.memory_limit_bytes is None:
            return None
        return self.memory_bytes <= self.memory_limit_bytes


@dataclass
class RunPlan:
    profile: Competition
    model: CostModel
    budget_s: float
    workers: int
    tasks_per_worker: int
    fixed_s: float  # load + engine start, per worker
    train_share: float
    scored_per_test: int
    stages: list[StagePlan]
    fixed_plan: bool  # steps/predictions given: times computed, not bought
    notes: list[str] = field(default_factory=list)

    @property
    def task_s(self) -> float:
        return (self.budget_s - self.fixed_s) / self.tasks_per_worker


def plan_run(
    profile: Competition,
    model: CostModel,
    *,
    tasks: int | None = None,
    prompt_tokens: tuple[int, ...] = DEFAULT_PROMPT_TOKENS,
    answer_tokens: int = DEFAULT_ANSWER_TOKENS,
    train_share: float = DEFAULT_TRAIN_SHARE,
    inference: InferenceConfig | None = None,
    steps: int | None = None,
    predictions: int | None = None,
    tokens_per_step: int = 0,
) -> RunPlan:
    """``tokens_per_step`` > 0: each stage also says what its TTFT time buys in packed
    steps of that many tokens (``StagePlan.packed``)."""
    _check_plan_options(tasks, prompt_tokens, answer_tokens, train_share, tokens_per_step)
    inference = inference or InferenceConfig()
    machine = profile.machine
    workers = machine.worker_count
    hidden = tasks or profile.hidden_tasks
    per_worker = math.ceil(hidden / workers)
    budget = profile.time_limit_s - profile.plan.safety_margin_s
    fixed = model.load_s + model.engine_start_s
    scored = inference.max_candidates * inference.score_augmentations if inference.scoring else 0
    memory_limit = None
    if machine.accelerator == "cuda":
        memory_limit = (1 - profile.plan.vllm_memory_share) * machine.gpu_memory_gb * 1e9
    plan = RunPlan(
        profile,
        model,
        budget,
        workers,
        per_worker,
        fixed,
        train_share,
        scored,
        [],
        steps is not None or predictions is not None,
    )
    if plan.task_s <= 0:
        plan.notes.append(f"start-up alone ({fixed:.0f} s per worker) exceeds the budget")
    for tokens in prompt_tokens:
        stage = _stage(plan, tokens, answer_tokens, steps, predictions, memory_limit)
        if tokens_per_step:
            stage.packed = _packed(model, tokens, tokens_per_step, stage.train_s)
        plan.stages.append(stage)
    return plan


def _check_plan_options(
    tasks: int | None, prompt_tokens: tuple[int, ...], answer_tokens: int, train_share: float, tokens_per_step: int
) -> None:
    from .cost_model import ProfilingError

    if tokens_per_step < 0:
        raise ProfilingError(f"`tokens_per_step` {tokens_per_step}: use 0 (one sequence per step) or more")
    if not 0 <= train_share <= 1:
        raise ProfilingError(f"`train_share` {train_share}: use a share in [0, 1]")
    if tasks is not None and tasks < 1:
        raise ProfilingError(f"`tasks` {tasks}: use at least 1")
    if not prompt_tokens or min(prompt_tokens) < 1 or answer_tokens < 1:
        raise ProfilingError("`prompt_tokens` and `answer_tokens` must be positive")


def _stage(
    plan: RunPlan,
    tokens: int,
    answer_tokens: int,
    steps: int | None,
    predictions: int | None,
    memory_limit: float | None,
) -> StagePlan:
    """One prompt length: with a fixed plan, what its steps and predictions cost; else
    what a task's time buys (the training share in steps, the rest after scoring in
    predictions)."""
    model = plan.model
    step_s = model.step_seconds(tokens)
    prediction_s = model.seconds_per_prediction(tokens, answer_tokens)
    score_s = model.seconds_per_score(tokens, answer_tokens)
    scoring_s = plan.scored_per_test * TEST_INPUTS_PER_TASK * score_s
    extrapolated = [
        name
        for name, var, value in (
            ("TTFT", "T", tokens),
            ("generation", "P", tokens),
            ("scoring", "L", tokens + answer_tokens),
        )
        if model.extrapolated(var, value)
    ]
    if plan.fixed_plan:
        n_steps, n_pred = steps or 0, predictions or 0
        train_s = n_steps * step_s
        sampling_s = n_pred * prediction_s
        stage_task_s = train_s + scoring_s + sampling_s
        total = plan.fixed_s + plan.tasks_per_worker * stage_task_s
    else:
        task_s = plan.task_s
        train_s = max(0.0, task_s * plan.train_share)
        n_steps = int(train_s // step_s) if step_s > 0 else 0
        sampling_s = max(0.0, task_s - train_s - scoring_s)
        n_pred = int(sampling_s // prediction_s) if prediction_s > 0 else 0
        stage_task_s, total = task_s, None
    return StagePlan(
        prompt_tokens=tokens,
        answer_tokens=answer_tokens,
        task_s=stage_task_s,
        train_s=train_s,
        step_s=step_s,
        steps=n_steps,
        prediction_s=prediction_s,
        score_s=score_s,
        scoring_s=scoring_s,
        sampling_s=sampling_s,
        predictions=n_pred,
        memory_bytes=model.step_memory_bytes(tokens),
        memory_limit_bytes=memory_limit,
        extrapolated=extrapolated,
        total_s=total,
    )


def _packed(model: CostModel, tokens: int, tokens_per_step: int, train_s: float) -> PackedPlan:
    """What ``train_s`` of TTFT buys in packed steps of ``tokens_per_step`` tokens."""
    count, packed_s = model.packed_step(tokens, tokens_per_step)
    return PackedPlan(
        tokens_per_step,
        count,
        packed_s,
        int(train_s // packed_s) if packed_s > 0 else 0,
        model.step_memory_bytes(count * tokens),
        model.extrapolated("T", count * tokens),
    )


# ---------------------------------------------------------------- text


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def _memory(stage: StagePlan) -> str:
    if stage.memory_bytes is None:
        return "-"
    text = f"{stage.memory_bytes / 1e9:.1f} GB"
    if stage.fits_memory is False:
        text += f" > {stage.memory_limit_bytes / 1e9:.1f} GB!"
    return text


def plan_header(plan: RunPlan) -> list[str]:
    p = plan.profile
    lines = [
        p.summary(),
        f"cost model: {plan.model.label}, {plan.model.source}",
        (
            f"budget: {_duration(p.time_limit_s)} limit − {_duration(p.plan.safety_margin_s)} safety margin = "
            f"{_duration(plan.budget_s)}; {plan.workers} worker(s), {plan.tasks_per_worker} tasks each; start-up "
            f"{_duration(plan.fixed_s)} per worker (load {plan.model.load_s:.3g} s + engine {plan.model.engine_start_s:.3g} s)"
        ),
    ]
    if plan.fixed_plan:
        lines.append("fixed plan: the time the given steps and predictions need, against the budget")
    else:
        lines.append(
            f"time per task {_duration(plan.task_s)}: {plan.train_share:.0%} TTFT, the rest inference "
            f"({plan.scored_per_test} scored answers per test input first, then sampling)"
        )
    return lines


def stage_table(plan: RunPlan) -> str:
    rows = [
        (
            "prompt tokens",
            "TTFT s/step",
            "steps/task",
            "TTFT memory",
            "s/prediction",
            "predictions/task",
            "scoring/task",
            "whole run" if plan.fixed_plan else "per task",
        ),
    ]
    for s in plan.stages:
        mark = " *" if s.extrapolated else ""
        last = (
            f"{_duration(s.total_s)} ({'fits' if s.total_s <= plan.budget_s else 'OVER budget'})"
            if s.total_s is not None
            else _duration(s.task_s)
        )
        rows.append(
            (
                f"{s.prompt_tokens}+{s.answer_tokens}{mark}",
                f"{s.step_s:.3g}",
                str(s.steps),
                _memory(s),
                f"{s.prediction_s:.3g}",
                str(s.predictions),
                _duration(s.scoring_s),
                last,
            )
        )
    return markdown(rows)


def markdown(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def plan_text(plan: RunPlan) -> str:
    lines = plan_header(plan) + ["", stage_table(plan), ""]
    if any(s.packed is not None for s in plan.stages):
        lines += ["TTFT at equal time per task, one sequence per step and packed:", "", ttft_table([plan]), ""]
    if any(s.extrapolated for s in plan.stages) or any(
        s.packed is not None and s.packed.extrapolated for s in plan.stages
    ):
        lines.append("* beyond the longest measured sequence: extrapolated by the fitted formula")
    lines += plan.notes
    lines.append("assumptions:")
    lines += [f"  - {a}" for a in plan.model.assumptions + [TYPICAL_SIZES_NOTE]]
    if plan.model.measured and plan.profile.machine.gpu_name.lower() not in plan.model.device.lower():
        lines.append(
            f"  - measured on {plan.model.device}, not on the profile's {plan.profile.machine.gpu_name}: the times "
            "are the measuring machine's (see `arcsub profile compare` for the analytic estimate of the target)"
        )
    return "\n".join(lines)


def _gigabytes(value: float | None, limit: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e9:.1f} GB" + (f" > {limit / 1e9:.1f} GB!" if limit is not None and value > limit else "")


def _rate(tokens_per_hour: float) -> str:
    return f"{tokens_per_hour / 1e6:.3g}M"


def ttft_table(plans: list[RunPlan]) -> str:
    """TTFT at equal time per task: steps, sequences and tokens per hour for one
    sequence per step and, when asked, for packed steps (``tokens_per_step``)."""
    packed = any(s.packed is not None for p in plans for s in p.stages)
    head = ["profile", "model", "prompt tokens", "TTFT time/task", "1 seq/step: s/step", "steps/task", "tokens/h"]
    if packed:
        budget = next(s.packed.tokens_per_step for p in plans for s in p.stages if s.packed is not None)
        head += [f"packed ≤{budget} tok: seq/step", "s/step", "steps/task", "sequences/task", "tokens/h", "memory"]
    rows = [tuple(head)]
    for plan in plans:
        for s in plan.stages:
            row = [
                plan.profile.name,
                plan.model.label,
                f"{s.prompt_tokens}" + (" *" if "TTFT" in s.extrapolated else ""),
                _duration(s.train_s),
                f"{s.step_s:.3g}",
                str(s.steps),
                _rate(s.tokens_per_hour),
            ]
            if s.packed is not None:
                k = s.packed
                row += [
                    str(k.sequences_per_step) + (" *" if k.extrapolated else ""),
                    f"{k.step_s:.3g}",
                    str(k.steps),
                    str(k.sequences),
                    _rate(k.tokens_per_hour(s.prompt_tokens)),
                    _gigabytes(k.memory_bytes, s.memory_limit_bytes),
                ]
            elif packed:
                row += ["-"] * 6
            rows.append(tuple(row))
    return markdown(rows)


def compare_text(plans: list[RunPlan]) -> str:
    """Per competition profile, one row per model and prompt length: what the budget
    buys per task; then TTFT at equal time (one sequence per step, and packed)."""
    head = (
        "model",
        "source",
        "params",
        "prompt tokens",
        "TTFT s/step",
        "steps/task",
        "TTFT memory",
        "s/prediction",
        "predictions/task",
    )
    lines: list[str] = []
    profiles = list(dict.fromkeys(p.profile.name for p in plans))
    for name in profiles:
        group = [p for p in plans if p.profile.name == name]
        rows = [head]
        for plan in group:
            params = f"{plan.model.params / 1e6:.0f}M" if plan.model.params else "?"
            for s in plan.stages:
                rows.append(
                    (
                        plan.model.label,
                        plan.model.source,
                        params,
                        f"{s.prompt_tokens}+{s.answer_tokens}" + (" *" if s.extrapolated else ""),
                        f"{s.step_s:.3g}",
                        str(s.steps),
                        _memory(s),
                        f"{s.prediction_s:.3g}",
                        str(s.predictions),
                    )
                )
        first = group[0]
        lines += plan_header(first)[:1] + plan_header(first)[2:] + ["", markdown(rows), ""]
    lines += [
        "TTFT at equal time per task (one worker; tokens/h: TTFT tokens per hour of training on one GPU):",
        "",
        ttft_table(plans),
        "",
    ]
    if any(s.extrapolated for p in plans for s in p.stages) or any(
        s.packed is not None and s.packed.extrapolated for p in plans for s in p.stages
    ):
        lines.append("* beyond the longest measured sequence: extrapolated by the fitted formula")
    lines.append("assumptions:")
    seen: list[str] = []
    for plan in plans:
        seen += [a for a in plan.model.assumptions if a not in seen]
    lines += [f"  - {a}" for a in seen + [TYPICAL_SIZES_NOTE]]
    return "\n".join(lines)


def plan_dict(plan: RunPlan) -> dict:
    return {
        "profile": plan.profile.name,
        "model": plan.model.label,
        "source": plan.model.source,
        "budget_s": plan.budget_s,
        "workers": plan.workers,
        "tasks_per_worker": plan.tasks_per_worker,
        "fixed_s": plan.fixed_s,
        "task_s": plan.task_s,
        "train_share": plan.train_share,
        "stages": [_stage_dict(s) for s in plan.stages],
        "assumptions": plan.model.assumptions + [TYPICAL_SIZES_NOTE],
    }


def _stage_dict(stage: StagePlan) -> dict:
    data = {k: v for k, v in stage.__dict__.items() if k != "packed"}
    data |= {"fits_memory": stage.fits_memory, "tokens_per_hour": stage.tokens_per_hour}
    if stage.packed is not None:
        data["packed"] = stage.packed.__dict__ | {
            "sequences": stage.packed.sequences,
            "tokens_per_hour": stage.packed.tokens_per_hour(stage.prompt_tokens),
        }
    return data
