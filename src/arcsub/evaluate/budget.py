"""The seconds each task gets in an evaluation.

Models compare at equal cost only when every task gets the same wall clock, whatever
the model does with it (a smaller one buys more TTFT steps or predictions). That time
is given (``--budget-per-task``) or is what a competition's 12 hours give a task on
its machine (``--profile``): ``arcsub profile plan``'s time per task, i.e. the budget
less the safety margin and one start-up per worker, spread over the hidden tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArcsubError

DEFAULT_MACHINE = "local-cpu"  # the profile the kernel runs under here: workers, device
DEFAULT_TASK_S = 120.0  # a CPU box: long enough for a few TTFT steps and 8 predictions
STARTUP_ALLOWANCE_S = 300.0  # model load and engine start per worker (vLLM on CPU: ~100 s)


class EvaluationError(ArcsubError):
    """The evaluation cannot run as asked."""


@dataclass(frozen=True)
class TaskBudget:
    per_task_s: float
    profile: str | None  # the competition profile it came from; None: given
    note: str  # how it was found, for the report and the screen

    def to_dict(self) -> dict:
        return {"per_task_s": round(self.per_task_s, 1), "profile": self.profile, "from": self.note}


def task_budget(model: str, *, per_task_s: float | None, competition: str | None, lora_rank: int = 32) -> TaskBudget:
    """``per_task_s`` as given, or the time per task ``competition``'s budget gives ``model``."""
    if per_task_s is not None and competition is not None:
        raise EvaluationError("pass either `per_task_s` or `budget_competition`, not both")
    if per_task_s is not None:
        if per_task_s <= 0:
            raise EvaluationError(f"`per_task_s` {per_task_s:g}: give a positive number of seconds")
        return TaskBudget(per_task_s, None, f"--budget-per-task {per_task_s:g}")
    if competition is None:
        return TaskBudget(DEFAULT_TASK_S, None, f"default {DEFAULT_TASK_S:g} s (pass --budget-per-task or --profile)")
    from ..competitions import load_competition
    from ..profile import cost_model_for, plan_run

    chosen = load_competition(competition)
    plan = plan_run(chosen, cost_model_for(model, chosen, lora_rank=lora_rank))
    if plan.task_s <= 0:
        raise EvaluationError(f"profile {chosen.name}: start-up alone exceeds the budget; no time per task")
    note = (
        f"profile {chosen.name}: {chosen.time_limit_s / 3600:g} h less {plan.fixed_s:.0f} s start-up "
        f"and the margin, {plan.workers} worker(s), {chosen.hidden_tasks} tasks"
    )
    return TaskBudget(plan.task_s, chosen.name, note)


def kernel_budget_s(per_task_s: float, tasks: int, safety_margin_s: float) -> float:
    """The kernel's whole budget: room for every task one after another, start-ups and
    the margin. Generous on purpose: the slices are fixed per task (the run request's ``task_s``)
    and the kernel ends when its last task does, so unused room costs nothing."""
    return safety_margin_s + STARTUP_ALLOWANCE_S + per_task_s * tasks
