"""A worker's start-up probe: the riskiest path of the run, once, measured.

Before its first task each worker runs the whole path on the smallest task of the test
file: a few fine-tuning steps (this machine's precision, the fp16 gradient scaler on a
T4), the adapter saved in fp16 and declared to the engine, one step-1 prompt generated
and one candidate scored under that adapter. It costs seconds, and it buys two things:

* on a smoke run, the first answer to "does this run on Kaggle's machine" (engine,
  attention backend, LoRA served, scaler) comes before any task, at the top of the
  report;
* no task is planned on guesses: the step time, a step-1 prompt and a scored answer are
  measured (``plan.MeasuredCosts``), and the first piece of every engine call is sized from
  them (``inference.deadline``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..finetune import STOP_SKIPPED, restore_trainable, save_adapter, train_task
from ..inference import sample_jobs, score_jobs
from ..models import model_window
from ..prompts import PromptBuilder
from ..selection import Candidate
from ..tasks import Task
from .plan import InferenceAsk, MeasuredCosts

log = logging.getLogger("arcsub.kernel")

PROBE_STEPS = 3  # the slowest (the first: allocations, kernels) is left out of the estimate
PROBE_ADAPTER = "probe-worker-{index}"  # the probe's adapter folder, one per worker (they start together)


class EngineFailure(RuntimeError):
    """The inference engine could not be imported or started, or failed serving (the
    supervisor then starts the worker again on transformers)."""


@dataclass
class ProbeResult:
    task: str
    cells: int
    seconds: float = 0.0
    train: dict | None = None  # steps, seconds, precision, scaler_skips, stop_reason; None: no fine-tuning
    lora_served: bool = False  # the probe's adapter was declared and served (generation and scoring)
    generate_s: float | None = None  # one step-1 prompt
    score_s: float | None = None  # one candidate under one augmentation

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def probe_task(tasks: dict[str, Task]) -> Task:
    """The smallest task that can be fine-tuned on (two train pairs: leave-one-out)."""
    ordered = sorted(tasks.values(), key=lambda t: (t.cells, t.id))
    return next((t for t in ordered if len(t.train) >= 2), ordered[0])


def run_probe(
    task: Task,
    *,
    config: Config,
    ask: InferenceAsk,
    backend,
    tokenizer,
    model_dir: str,
    adapters_dir: Path,
    costs: MeasuredCosts,
    worker: int = 0,
    model=None,
    initial=None,
) -> ProbeResult:
    """Train ``PROBE_STEPS`` steps (when ``model`` is given), serve the adapter, time one
    generation and one scoring; the measurements go into ``costs``."""
    started = time.time()
    result = ProbeResult(task.id, task.cells)
    adapter = None
    if model is not None:
        folder = Path(adapters_dir) / PROBE_ADAPTER.format(index=worker)
        adapter, result.train = _train(task, config, model, tokenizer, initial, folder, costs)
    try:
        if adapter is not None:
            backend.add_adapter(adapter)
        builder = PromptBuilder(config.prompt, tokenizer)
        window = min(config.inference.max_model_len or model_window(model_dir), config.prompt.max_seq_len)
        one = dataclasses.replace(
            config, inference=dataclasses.replace(config.inference, num_augmentations=1, score_augmentations=1)
        )
        jobs, _skipped = sample_jobs([task], builder, one, {task.id: adapter} if adapter else None, window)
        if jobs:
            began = time.time()
            backend.generate([jobs[0].request])
            result.generate_s = time.time() - began
            costs.record_inference(task.cells, {"sample": (1, result.generate_s)}, ask.prompts)
        candidates = [[Candidate(grid=task.test[0].input)]] + [[] for _ in task.test[1:]]
        scored, _skipped = score_jobs(task, candidates, builder, one, adapter, window)
        if scored:
            began = time.time()
            backend.score([scored[0].request])
            result.score_s = time.time() - began
            costs.record_inference(task.cells, {"score": (1, result.score_s)}, ask.prompts)
        result.lora_served = adapter is not None and bool(jobs) and bool(scored)
    except Exception as exc:
        if backend.name == "vllm":
            raise EngineFailure(f"vLLM failed serving the start-up probe: {type(exc).__name__}: {exc}") from exc
        raise
    finally:
        if adapter is not None:
            _release(backend, adapter)
        if model is not None:
            restore_trainable(model, initial)
    result.seconds = round(time.time() - started, 2)
    return result


def _release(backend, adapter: str) -> None:
    """Forget the probe's adapter; a failed engine may refuse, and its failure is the
    one to report."""
    try:
        backend.release_adapter(adapter)
    except Exception:  # the engine's own failure is already on its way up
        log.debug("the probe's adapter was not released", exc_info=True)


def _train(task, config, model, tokenizer, initial, folder: Path, costs: MeasuredCosts):
    """A few steps from the initial adapter, saved as the tasks' adapters are; returns
    (the adapter folder or None, what the training did)."""
    restore_trainable(model, initial)
    trained = train_task(model, tokenizer, task, config, max_steps=PROBE_STEPS, progress=False)
    facts = {
        "steps": trained.steps,
        "seconds": round(trained.seconds, 2),
        "precision": trained.precision,
        "scaler_skips": trained.scaler_skips,
        "stop_reason": trained.stop_reason,
    }
    if trained.stop_reason == STOP_SKIPPED or trained.steps == 0:
        facts["message"] = trained.message
        return None, facts
    if trained.steps > 1:  # the slowest step (the first: allocations, kernels) left out
        tokens = trained.tokens * (trained.steps - 1) / trained.steps
        costs.record_training(tokens, trained.steps - 1, trained.seconds - trained.max_step_seconds)
    else:
        costs.record_training(trained.tokens, trained.steps, trained.seconds)
    target = save_adapter(model, folder, result=trained, half=True)
    return str(target), facts
