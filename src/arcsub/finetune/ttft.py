"""Test-time fine-tuning: train on each task's own leave-one-out prompts, one adapter
per task (or one shared adapter over a group), under a deadline, resumable."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, save_config
from ..console import progress_bar
from ..errors import ConfigError, FinetuneError
from ..io import write_json_atomic
from ..models import model_window
from ..prompts import PromptBuilder
from ..tasks import Task
from .adapters import RESULT_FILE, save_adapter, save_merged
from .data import LeaveOneOut
from .loop import train_examples
from .model import restore_trainable, trainable_state
from .result import STOP_SKIPPED, TrainResult
from .slices import task_slice

log = logging.getLogger("arcsub.finetune")

CONFIG_FILE = "config.toml"


def check_window(model, config: Config) -> int:
    """The training sequence budget, refused when it exceeds the model's window
    (positions past it were never trained: extend the context first)."""
    budget = config.finetune.max_seq_len or config.prompt.max_seq_len
    window = model_window(model.config.to_dict())
    if budget > window:
        key = "finetune.max_seq_len" if config.finetune.max_seq_len else "prompt.max_seq_len"
        raise ConfigError(
            f"{key} = {budget} exceeds the model's window of {window} tokens; lower it, "
            "or extend the model's context first (arcsub model extend-context)"
        )
    return budget


def steps_to_train(config: Config, max_steps: int | None) -> int:
    """``max_steps`` or ``finetune.steps``; 0 (no fine-tuning) is refused here."""
    steps = config.finetune.steps if max_steps is None else max_steps
    if steps < 1:
        raise FinetuneError(f"{steps} fine-tuning steps: nothing to train; give at least 1 (--steps N)")
    return steps


def train_task(
    model,
    tokenizer,
    task: Task | Sequence[Task],
    config: Config,
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
    label: str | None = None,
    on_step=None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune on one task's leave-one-out prompts (or on a group of tasks: one
    shared adapter). Uses ``config.prompt`` (codec, budget), ``config.augment``
    (augmentation switches) and ``config.finetune``. A task whose smallest prompt does
    not fit ``finetune.max_seq_len`` (default ``prompt.max_seq_len``) is not trained:
    the result has ``stop_reason == "skipped"`` and the reason in ``message``.
    ``on_step`` and ``progress`` are passed to ``train_examples``."""
    tasks = [task] if isinstance(task, Task) else list(task)
    label = label or (tasks[0].id if len(tasks) == 1 else f"{len(tasks)} tasks")
    steps = steps_to_train(config, max_steps)
    check_window(model, config)
    data = LeaveOneOut(tasks, PromptBuilder(config.prompt, tokenizer), config)
    if not len(data):
        reasons = "; ".join(f"{tid}: {why}" for tid, why in data.skipped.items())
        result = TrainResult(label=label, total_steps=steps, stop_reason=STOP_SKIPPED, message=reasons)
        log.info("%s: not trained (%s)", label, reasons)
        return result
    result = train_examples(
        model,
        data,
        config.finetune,
        deadline=deadline,
        max_steps=steps,
        label=label,
        stream=label,
        on_step=on_step,
        progress=progress,
    )
    if data.skipped:
        result.message = "left out: " + "; ".join(f"{tid}: {why}" for tid, why in data.skipped.items())
    log.info("%s", result.summary())
    return result


def expected_step_tokens(task: Task, tokenizer, config: Config, draws: int = 4) -> float:
    """Tokens a training step of ``task`` will carry: its leave-one-out prompts' mean
    length (a few drawn, as training draws them), or with ``finetune.tokens_per_step``
    what packing fills (the budget less half a sequence on average, at least one). The
    kernel prices a step by this; 0 when the task has nothing to train on."""
    data = LeaveOneOut([task], PromptBuilder(config.prompt, tokenizer), config)
    if not len(data):
        return 0.0
    rng = random.Random(config.finetune.seed)
    typical = sum(len(data(i, rng).input_ids) for i in range(draws)) / draws
    budget = config.finetune.tokens_per_step
    return max(typical, budget - typical / 2) if budget else typical


def train_tasks(
    model,
    tokenizer,
    tasks: Sequence[Task],
    config: Config,
    out_dir: str | os.PathLike,
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, TrainResult]:
    """Train and save adapters for ``tasks`` by ``config.finetune.adapter_mode``:

    per_task  one adapter per task in ``out_dir/<task_id>/``; every task starts from
              the same initial adapter; the time left before ``deadline`` is shared
              among the tasks still to train by their size (``task_slice``, as the
              kernel shares it); a task whose adapter folder already holds a result
              is not trained again (resume)
    shared    one adapter over all the tasks in ``out_dir/shared/``

    The config is saved as ``out_dir/config.toml``; ``progress`` shows one bar for all
    the steps of all the tasks. Returns results by task id (the shared mode gives every
    task the one shared result)."""
    steps = steps_to_train(config, max_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / CONFIG_FILE)
    shared = config.finetune.adapter_mode == "shared"
    bar = progress_bar(total=steps * (1 if shared else len(tasks)), desc="fine-tuning", unit="step", enabled=progress)
    with bar:
        if shared:
            result = train_task(
                model, tokenizer, tasks, config, deadline=deadline, max_steps=steps, label="shared",
                on_step=lambda _state: bar.update(1), progress=False,
            )  # fmt: skip
            if result.stop_reason != STOP_SKIPPED:
                _save_trained(model, tokenizer, out / "shared", config, result)
            return {task.id: result for task in tasks}

        initial = trainable_state(model)
        results: dict[str, TrainResult] = {}
        waiting = sum(float(t.cells) for t in tasks if not (out / t.id / RESULT_FILE).is_file())
        for task in tasks:
            bar.set_postfix_str(task.id, refresh=False)
            target = out / task.id
            if (target / RESULT_FILE).is_file():
                results[task.id] = TrainResult.from_dict(json.loads((target / RESULT_FILE).read_text()))
                log.info("%s: adapter already in %s, not trained again", task.id, target)
                bar.update(steps)
                continue
            task_deadline = None
            if deadline is not None:
                now = time.time()
                task_deadline = now + task_slice(float(task.cells), waiting, now, deadline)
            waiting -= float(task.cells)
            restore_trainable(model, initial)
            result = train_task(
                model, tokenizer, task, config, deadline=task_deadline, max_steps=steps,
                on_step=lambda _state: bar.update(1), progress=False,
            )  # fmt: skip
            bar.update(steps - result.steps)  # a skipped task, or one stopped by its deadline
            results[task.id] = result
            if result.stop_reason == STOP_SKIPPED:
                write_json_atomic(out / f"{task.id}.skipped.json", result.to_dict(), indent=1)
            else:
                _save_trained(model, tokenizer, target, config, result)
        restore_trainable(model, initial)
    return results


def _save_trained(model, tokenizer, target: Path, config: Config, result: TrainResult) -> None:
    save_adapter(model, target, tokenizer=tokenizer if config.finetune.method == "full" else None, result=result)
    if config.finetune.merge and config.finetune.method == "lora":
        save_merged(model, tokenizer, target.with_name(target.name + ".merged"))
