"""The training loop behind ``arcsub.finetune``: one sequence at a time, under a deadline.

``train_examples(model, examples, config)`` trains whatever weights of ``model`` have
``requires_grad`` (a LoRA adapter from ``attach_lora``, or every weight) on
``TokenizedPrompt`` examples, and returns a ``TrainResult``. Read top to bottom, a
step is:

  1. stop if the deadline would pass during the step (estimated from past steps);
  2. ``grad_accum`` times: take an example, forward it under the precision's autocast,
     compute the loss on its labelled tokens only (logits are computed only from the
     first labelled position on: ARC prompts are long and answers short), backward;
  3. if any loss or the gradient norm is NaN/inf, skip the step (the guard); after
     ``nan_patience`` such steps in a row, put back the last weights known to give a
     finite loss and stop with ``stop_reason = "non_finite"``;
  4. clip, step the optimizer (through the gradient scaler in fp16), advance the
     warm-up + decay schedule, log every ``log_every`` steps, call ``on_step``.

Precision (``FinetuneConfig.precision``, ``auto`` by default): bf16 autocast on CUDA
with bf16; fp16 autocast with a gradient scaler on other CUDA cards (the T4 of
Kaggle); fp32 on CPU. fp16 and bf16 can be forced anywhere, CPU included. The
trainable weights are always fp32 (the scaler cannot unscale fp16 gradients).

With an ``accelerate.Accelerator`` (``arcsub finetune`` under ``accelerate launch``),
the model is wrapped for data parallelism, gradients are all-reduced once per step,
and the stop decisions (deadline, non-finite) are agreed by all processes so none is
left waiting on the others. Examples from a callable are drawn with a generator that
depends only on (seed, stream, process, micro-step): runs are reproducible, each
process sees different data, and a resumed run continues the same stream.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .config import FinetuneConfig
from .errors import ConfigError, FinetuneError
from .hardware import native_bf16
from .prompts import IGNORE_INDEX, TokenizedPrompt

log = logging.getLogger("arcsub.finetune")

ExampleFn = Callable[[int, random.Random], TokenizedPrompt]
Examples = Union[Sequence[TokenizedPrompt], ExampleFn]

# Why a run stopped (TrainResult.stop_reason).
STOP_MAX_STEPS = "max_steps"
STOP_DEADLINE = "deadline"
STOP_NON_FINITE = "non_finite"
STOP_SKIPPED = "skipped"  # nothing to train on (set by train_task)


@dataclass
class TrainResult:
    """What a training run did. ``losses`` holds one mean loss per optimizer step."""

    label: str = ""
    precision: str = ""
    total_steps: int = 0  # steps asked for
    steps: int = 0  # optimizer steps taken
    micro_steps: int = 0  # sequences forwarded and backwarded, skipped steps included
    tokens: int = 0  # tokens in those sequences
    seconds: float = 0.0
    max_step_seconds: float = 0.0  # the slowest step: a deadline is overshot by less than this
    losses: list[float] = field(default_factory=list)
    stop_reason: str = ""
    skipped_steps: int = 0  # steps the non-finite guard skipped
    scaler_skips: int = 0  # fp16: steps the gradient scaler skipped while finding its scale
    restored: bool = False  # the guard put back the last good weights
    message: str = ""  # the reason in words, when it is not plain

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tokens_per_second": self.tokens_per_second}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainResult:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in names})

    def summary(self) -> str:
        first = f"{self.losses[0]:.4f}" if self.losses else "-"
        last = f"{self.losses[-1]:.4f}" if self.losses else "-"
        text = (
            f"{self.label or 'run'}: {self.steps}/{self.total_steps} steps, loss {first} -> {last}, "
            f"{self.tokens_per_second:.0f} tokens/s, {self.seconds:.1f}s, stopped: {self.stop_reason}"
        )
        return text + (f" ({self.message})" if self.message else "")


# ---------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16

    @property
    def autocast_dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def uses_scaler(self) -> bool:
        return self.name == "fp16"

    def base_dtype(self):
        """dtype for frozen base weights under LoRA (trainable weights stay fp32)."""
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]


def resolve_precision(requested: str, device) -> Precision:
    """``auto`` -> bf16 on CUDA with bf16, fp16 on other CUDA (T4), fp32 elsewhere."""
    import torch

    on_cuda = getattr(device, "type", str(device)) == "cuda"
    if requested == "auto":
        if on_cuda:
            return Precision("bf16" if native_bf16(device) else "fp16")
        return Precision("fp32")
    if requested == "bf16" and on_cuda and not native_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"finetune.precision = 'bf16' but {name} has no bf16; use 'fp16' or 'auto'")
    return Precision(requested)


# ---------------------------------------------------------------- schedule


def lr_factor(step: int, total: int, config: FinetuneConfig) -> float:
    """Multiplier of the learning rate at optimizer step ``step`` (0-based): linear
    warm-up over ``warmup_steps``, then cosine, linear or constant to ``total``."""
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.lr_schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if config.lr_schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- state


class TrainingState:
    """The live pieces of a run; ``state_dict``/``load_state_dict`` make checkpoints."""

    def __init__(self, model, named_params, optimizer, scheduler, scaler, result: TrainResult, accelerator=None):
        self.model = model  # unwrapped (a PeftModel or the full model)
        self.named_params = named_params
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.result = result
        self.accelerator = accelerator

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def state_dict(self) -> dict[str, Any]:
        return {
            "trainable": {name: p.detach().to("cpu", copy=True) for name, p in self.named_params},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "result": self.result.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        params = dict(self.named_params)
        missing = sorted(set(params) - set(state["trainable"]))
        if missing:
            raise FinetuneError(
                f"the checkpoint lacks {len(missing)} trainable weight(s) (e.g. {missing[0]}); "
                "it was made with another model or finetune method: resume with the same config"
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state["trainable"][name].to(p.device, p.dtype))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        done = TrainResult.from_dict(state["result"])
        progress = ("steps", "micro_steps", "tokens", "seconds", "max_step_seconds", "losses")
        for key in progress + ("skipped_steps", "scaler_skips"):
            setattr(self.result, key, getattr(done, key))


def _snapshot(named_params):
    return [p.detach().clone() for _, p in named_params]


def _restore(named_params, snapshot) -> None:
    import torch

    with torch.no_grad():
        for (_, p), saved in zip(named_params, snapshot):
            p.copy_(saved)


# ---------------------------------------------------------------- helpers


def step_rng(seed: int, stream: str, process: int, micro_step: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{stream}:{process}:{micro_step}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def model_device(model):
    return next(model.parameters()).device


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(_base_model(model).forward).parameters


def answer_loss(model, example: TokenizedPrompt, device, precision: Precision, *, logits_to_keep: bool = True):
    """Mean cross-entropy over the labelled tokens of one example (batch of 1).

    Logits are computed only from the position before the first labelled token on
    (``logits_to_keep``): on a 4k-token prompt with a 100-token answer that skips
    97% of the vocabulary projection and its memory."""
    import torch
    import torch.nn.functional as F

    labelled = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX and i > 0]
    if not labelled:
        raise FinetuneError("a training example has no labelled token after the first; its loss would be empty")
    first = labelled[0]
    n = len(example.input_ids)
    ids = torch.tensor([example.input_ids], device=device)
    targets = torch.tensor(example.labels[first:], device=device)
    autocast = (
        torch.autocast(device.type, dtype=precision.autocast_dtype) if precision.autocast_dtype else nullcontext()
    )
    with autocast:
        if logits_to_keep:
            logits = model(input_ids=ids, logits_to_keep=n - first + 1, use_cache=False).logits[0, :-1]
        else:
            logits = model(input_ids=ids, use_cache=False).logits[0, first - 1 : -1]
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)


class _Agreement:
    """Decisions every process must share (stop now? skip this step?)."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.distributed = accelerator is not None and accelerator.num_processes > 1

    def any(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        import torch

        value = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, "sum").item() > 0)


# ---------------------------------------------------------------- the loop


def train_examples(
    model,
    examples: Examples,
    config: FinetuneConfig,
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
    label: str = "",
    stream: str = "",
    accelerator=None,
    resume_state: dict[str, Any] | None = None,
    on_step: Callable[[TrainingState], None] | None = None,
) -> TrainResult:
    """Train ``model``'s trainable weights on ``examples``; see the module docstring.

    examples    a list of TokenizedPrompt (cycled in order), or a callable
                ``(micro_step, rng) -> TokenizedPrompt`` drawing a fresh one each time
    deadline    ``time.time()`` value; no step starts that is expected to end after it
    max_steps   optimizer steps (default ``config.steps``); the schedule spans them
    label       names the run in logs and the progress bar (e.g. the task id)
    stream      mixed into the example generator's seed (e.g. the task id)
    accelerator an ``accelerate.Accelerator`` for data-parallel runs
    resume_state a ``TrainingState.state_dict()`` to continue from
    on_step     called after every optimizer step (checkpoints, progress)
    """
    import torch
    from tqdm import tqdm

    total = config.steps if max_steps is None else max_steps
    if isinstance(examples, Sequence) and not callable(examples) and len(examples) == 0:
        raise FinetuneError(f"{label or 'training'}: no examples to train on")
    device = accelerator.device if accelerator is not None else model_device(model)
    precision = resolve_precision(config.precision, device)
    result = TrainResult(label=label, precision=precision.name, total_steps=total)

    named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named_params:
        raise FinetuneError("the model has no trainable weights; attach an adapter (attach_lora) or use method 'full'")
    for _, p in named_params:
        if p.dtype != torch.float32:  # the scaler and Adam need fp32 master weights
            p.data = p.data.float()
    forward_model = accelerator.prepare_model(model) if accelerator is not None else model
    process = accelerator.process_index if accelerator is not None else 0
    main = accelerator is None or accelerator.is_main_process

    optimizer = torch.optim.AdamW(
        [p for _, p in named_params], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, config))
    scaler = torch.amp.GradScaler(device.type) if precision.uses_scaler else None
    state = TrainingState(model, named_params, optimizer, scheduler, scaler, result, accelerator)
    if resume_state is not None:
        state.load_state_dict(resume_state)
    agree = _Agreement(accelerator)
    keep_logits = _accepts_logits_to_keep(model)

    def example(micro: int) -> TokenizedPrompt:
        if callable(examples):
            return examples(micro, step_rng(config.seed, stream, process, micro))
        return examples[micro % len(examples)]

    base = _base_model(model)
    checkpointing_was_on = bool(getattr(base, "is_gradient_checkpointing", False))
    if config.gradient_checkpointing and not checkpointing_was_on:
        # Non-reentrant: works with frozen inputs (LoRA) and with DDP.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    was_training = model.training
    model.train()

    good_snapshot = _snapshot(named_params)  # weights known to give a finite loss
    bad_in_row = 0
    step_seconds = None  # moving average, for the deadline
    window: list[float] = []  # losses since the last log line
    started = time.time() - result.seconds
    bar = tqdm(
        total=total,
        initial=result.steps,
        desc=label or "finetune",
        unit="step",
        leave=False,
        disable=None if (config.progress and main) else True,
    )
    try:
        while result.steps < total:
            now = time.time()
            late = deadline is not None and now + (step_seconds or 0.0) > deadline
            if agree.any(late):
                result.stop_reason = STOP_DEADLINE
                break
            candidate = _snapshot(named_params) if result.steps % config.snapshot_every == 0 else None

            optimizer.zero_grad(set_to_none=True)
            losses, finite = [], True
            for k in range(config.grad_accum):
                ex = example(result.micro_steps)
                result.micro_steps += 1
                last = k == config.grad_accum - 1
                sync = nullcontext() if last or accelerator is None else accelerator.no_sync(forward_model)
                with sync:
                    loss = answer_loss(forward_model, ex, device, precision, logits_to_keep=keep_logits)
                    scaled = loss / config.grad_accum
                    # Always backward, even a NaN: under DDP every process must join the all-reduce.
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                value = float(loss.detach())
                finite = finite and math.isfinite(value)
                losses.append(value)
                result.tokens += len(ex.input_ids)

            bad = agree.any(not finite)
            if not bad:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(
                    [p for _, p in named_params], config.max_grad_norm or float("inf")
                )
                if scaler is not None:
                    scale = scaler.get_scale()
                    scaler.step(optimizer)  # skips the update itself when the scaled gradients overflowed
                    scaler.update()
                    result.scaler_skips += scaler.get_scale() < scale
                elif not math.isfinite(float(norm)):
                    bad = True  # the same on every process: gradients are all-reduced
                else:
                    optimizer.step()
            elapsed = time.time() - now
            result.max_step_seconds = max(result.max_step_seconds, elapsed)
            if bad:
                optimizer.zero_grad(set_to_none=True)
                result.skipped_steps += 1
                bad_in_row += 1
                if main:
                    log.warning(
                        "%s: step %d: non-finite loss or gradient (%s), step skipped (%d in a row)",
                        label or "finetune",
                        result.steps + 1,
                        ", ".join(f"{v:.4g}" for v in losses),
                        bad_in_row,
                    )
                if bad_in_row >= config.nan_patience:
                    _restore(named_params, good_snapshot)
                    result.restored = True
                    result.stop_reason = STOP_NON_FINITE
                    result.message = f"{bad_in_row} non-finite steps in a row; restored the last good weights"
                    if main:
                        log.warning("%s: %s and stopped", label or "finetune", result.message)
                    break
                continue

            bad_in_row = 0
            if candidate is not None:
                good_snapshot = candidate  # these weights just gave a finite loss
            scheduler.step()
            result.steps += 1
            mean_loss = sum(losses) / len(losses)
            result.losses.append(mean_loss)
            window.append(mean_loss)
            step_seconds = elapsed if step_seconds is None else 0.7 * step_seconds + 0.3 * elapsed
            result.seconds = time.time() - started
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            if main and (result.steps % config.log_every == 0 or result.steps == total):
                left = f", {deadline - time.time():.0f}s before the deadline" if deadline is not None else ""
                log.info(
                    "%s: step %d/%d loss %.4f lr %.2e %.0f tokens/s%s",
                    label or "finetune",
                    result.steps,
                    total,
                    sum(window) / len(window),
                    scheduler.get_last_lr()[0],
                    result.tokens_per_second,
                    left,
                )
                window.clear()
            if on_step is not None:
                on_step(state)
        else:
            result.stop_reason = STOP_MAX_STEPS
    finally:
        bar.close()
        result.seconds = time.time() - started
        if config.gradient_checkpointing and not checkpointing_was_on:
            base.gradient_checkpointing_disable()
        model.train(was_training)
    return result
