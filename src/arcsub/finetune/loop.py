"""The training loop: one sequence at a time, under a deadline.

``train_examples(model, examples, config)`` trains whatever weights of ``model`` have
``requires_grad`` (a LoRA adapter from ``attach_lora``, or every weight) on
``TokenizedPrompt`` examples, and returns a ``TrainResult``. A step:

  1. stop if the deadline would pass during the step (``StepTimer``);
  2. ``grad_accum`` times: take an example, forward it under the precision's autocast,
     compute the loss on its labelled tokens only, backward (``accumulate_gradients``);
     with ``finetune.tokens_per_step``, instead, take as many examples as fit in that
     many tokens and put them through one forward pass (``packing.py``: the same loss
     and gradients as one by one, fixed costs paid once);
  3. clip and step the optimizer, through the gradient scaler in fp16
     (``apply_gradients``); a NaN/inf loss or gradient skips the step, and after
     ``nan_patience`` such steps in a row the last weights known to give a finite loss
     are put back and the run stops (``NonFiniteGuard``);
  4. advance the warm-up + decay schedule (``transformers.get_scheduler``), measure the
     validation loss every ``eval_every`` steps and at the end (``evaluate``, when
     given), log every ``log_every`` steps (``StepLog``), call ``on_step``.

Sequences go through the model one at a time (batch 1, so nothing is padded); the
``grad_accum`` sequences of a step are drawn first and run longest first, so a step
reaches its peak memory on its first forward.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from ..config import FinetuneConfig
from ..console import progress_bar
from ..errors import FinetuneError
from ..prompts import IGNORE_INDEX, TokenizedPrompt
from .model import trainable_in_fp32
from .packing import StepDraw, batch_loss, packing_layout
from .precision import Precision, resolve_precision
from .result import STOP_DEADLINE, STOP_MAX_STEPS, STOP_NON_FINITE, TrainResult

log = logging.getLogger("arcsub.finetune")

ExampleFn = Callable[[int, random.Random], TokenizedPrompt]
Examples = Sequence[TokenizedPrompt] | ExampleFn

# FinetuneConfig.lr_schedule -> transformers.get_scheduler name (all warm up linearly from 0)
SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


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
    progress: bool = True,
    evaluate: Callable[[TrainingState], float] | None = None,
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
    on_step     called after every optimizer step (checkpoints, a caller's progress bar)
    progress    show this run's own progress bar (on a terminal)
    evaluate    the validation loss of the model now (no gradient; ``validation.py``),
                recorded in ``result.val_losses`` every ``config.eval_every`` steps and
                at the end
    """
    total = config.steps if max_steps is None else max_steps
    state = TrainingState.start(model, examples, config, total, label, accelerator, resume_state)
    result, name = state.result, label or "finetune"
    draw = example_source(examples, config.seed, stream, state.process)
    if config.tokens_per_step:
        state.step_draw = StepDraw(draw, config.tokens_per_step, drawn=result.micro_steps)
    guard = NonFiniteGuard(state.named_params, config.nan_patience, config.snapshot_every)
    timer, steps_log = StepTimer(deadline), StepLog(name, total, config.log_every, state.is_main_process)
    started = time.time() - result.seconds
    bar = progress_bar(
        total=total,
        initial=result.steps,
        desc=name,
        unit="step",
        leave=False,
        enabled=progress and state.is_main_process,
    )
    with bar, training_mode(model, config.gradient_checkpointing):
        while result.steps < total:
            if state.agree(timer.would_overrun()):
                result.stop_reason = STOP_DEADLINE
                break
            guard.offer_snapshot(result.steps)
            step_started = time.time()
            state.optimizer.zero_grad(set_to_none=True)
            if state.step_draw is not None:
                losses = packed_gradients(state)
            else:
                losses = accumulate_gradients(state, draw, config.grad_accum)
            finite = not state.agree(not all(math.isfinite(v) for v in losses))
            applied = finite and apply_gradients(state, config.max_grad_norm)
            seconds = time.time() - step_started
            result.max_step_seconds = max(result.max_step_seconds, seconds)
            if applied is OVERFLOW:
                # The scaler halved its scale and skipped the update: the step is done again,
                # and the schedule does not move (else a short TTFT would lose its warm-up).
                state.optimizer.zero_grad(set_to_none=True)
                timer.record(seconds)
                continue
            if not applied:
                state.optimizer.zero_grad(set_to_none=True)
                result.skipped_steps += 1
                steps_log.skipped(result.steps + 1, losses, guard.bad_in_row + 1)
                if guard.reject():
                    result.restored, result.stop_reason = True, STOP_NON_FINITE
                    result.message = f"{guard.bad_in_row} non-finite steps in a row; restored the last good weights"
                    steps_log.stopped(result.message)
                    break
                continue
            guard.accept()
            state.scheduler.step()
            mean_loss = sum(losses) / len(losses)
            result.steps += 1
            result.losses.append(mean_loss)
            val = None
            if evaluate is not None and (result.steps % config.eval_every == 0 or result.steps == total):
                val = validate(state, evaluate)
            result.seconds = time.time() - started
            timer.record(seconds)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            steps_log.step(result, mean_loss, state.scheduler.get_last_lr()[0], timer.seconds_left(), val)
            if on_step is not None:
                on_step(state)
        else:
            result.stop_reason = STOP_MAX_STEPS
        if (
            evaluate is not None
            and result.steps
            and (not result.val_losses or result.val_losses[-1][0] != result.steps)
        ):
            steps_log.validation(result, validate(state, evaluate))  # stopped early: the end still gets one
    result.seconds = time.time() - started
    return result


def validate(state: TrainingState, evaluate: Callable[[TrainingState], float]) -> float:
    value = evaluate(state)
    state.result.val_losses.append([state.result.steps, value])
    return value


# ---------------------------------------------------------------- state


class TrainingState:
    """The live pieces of a run; ``state_dict``/``load_state_dict`` make checkpoints."""

    def __init__(
        self, model, named_params, optimizer, scheduler, scaler, precision: Precision, result, accelerator, device
    ):
        self.model = model  # unwrapped (a PeftModel or the full model)
        self.named_params = named_params
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.precision, self.result, self.accelerator, self.device = precision, result, accelerator, device
        self.forward_model = accelerator.prepare_model(model) if accelerator is not None else model
        self.keep_logits = "logits_to_keep" in inspect.signature(_base_model(model).forward).parameters
        self.step_draw: StepDraw | None = None  # finetune.tokens_per_step: several sequences per step
        self.layout = "packed"
        self.pad_to: int | None = None  # finetune.compile: packed rows padded to this multiple of tokens

    @classmethod
    def start(cls, model, examples, config: FinetuneConfig, total: int, label: str, accelerator, resume_state):
        """Trainable weights in fp32, AdamW, the schedule, the gradient scaler (fp16);
        continued from ``resume_state`` when given."""
        import torch

        if isinstance(examples, Sequence) and not callable(examples) and len(examples) == 0:
            raise FinetuneError(f"{label or 'training'}: no examples to train on")
        named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named_params:
            raise FinetuneError(
                "the model has no trainable weights; attach an adapter (attach_lora) or use method 'full'"
            )
        trainable_in_fp32(model)  # the scaler and Adam need fp32 master weights
        device = accelerator.device if accelerator is not None else model_device(model)
        precision = resolve_precision(config.precision, device)
        optimizer = make_optimizer(named_params, config)
        scheduler = make_scheduler(optimizer, config, total)
        scaler = (
            torch.amp.GradScaler(device.type, init_scale=config.scaler_init_scale) if precision.uses_scaler else None
        )
        result = TrainResult(label=label, precision=precision.name, total_steps=total)
        state = cls(model, named_params, optimizer, scheduler, scaler, precision, result, accelerator, device)
        state.layout = packing_layout(model, config.packing)
        if config.compile:
            state.compile_forward(config.compile_bucket)
        if resume_state is not None:
            state.load_state_dict(resume_state)
        return state

    def compile_forward(self, bucket: int) -> None:
        """``torch.compile`` the forward pass; packed rows are padded to multiples of
        ``bucket`` tokens so the shapes repeat across steps and tasks. CUDA graphs on CUDA
        (static shapes), the default inductor mode elsewhere."""
        import torch

        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self.forward_model = torch.compile(self.forward_model, dynamic=False, mode=mode)
        self.pad_to = bucket

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def process(self) -> int:
        return self.accelerator.process_index if self.accelerator is not None else 0

    def agree(self, flag: bool) -> bool:
        """True if ``flag`` is true on any process (stop now? skip this step?)."""
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return flag
        import torch

        value = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, "sum").item() > 0)

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
        progress = ("steps", "micro_steps", "tokens", "seconds", "max_step_seconds", "losses", "val_losses")
        for key in progress + ("skipped_steps", "scaler_skips"):
            setattr(self.result, key, getattr(done, key))


EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


def parameter_groups(named_params, config: FinetuneConfig) -> list[dict]:
    """One optimizer group, or two when embeddings train (full fine-tuning, or LoRA on
    them): their learning rate is ``embedding_lr_scale`` times the rest's. The schedule
    scales both alike."""
    embedding, rest = [], []
    for name, param in named_params:
        (embedding if any(part in name for part in EMBEDDING_NAMES) else rest).append(param)
    if not embedding or config.embedding_lr_scale == 1.0:
        return [{"params": [p for _, p in named_params]}]
    return [{"params": rest}, {"params": embedding, "lr": config.learning_rate * config.embedding_lr_scale}]


def make_optimizer(named_params, config: FinetuneConfig):
    """AdamW over the trainable weights; ``finetune.fused_optimizer``: its fused kernel
    (one launch for all the adapter's small tensors instead of several per tensor)."""
    import torch

    fused = {"fused": True} if config.fused_optimizer else {}
    try:
        return torch.optim.AdamW(
            parameter_groups(named_params, config), lr=config.learning_rate, weight_decay=config.weight_decay, **fused
        )  # fmt: skip
    except RuntimeError as exc:  # a device or dtype the fused kernel does not support
        raise FinetuneError(f"finetune.fused_optimizer = true: {exc}; set it false on this device") from None


def make_scheduler(optimizer, config: FinetuneConfig, total: int):
    """Linear warm-up from 0 over ``warmup_steps``, then ``lr_schedule`` to ``total``."""
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULERS[config.lr_schedule], optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total
    )


# ---------------------------------------------------------------- one step


def accumulate_gradients(state: TrainingState, draw: Callable[[int], TokenizedPrompt], grad_accum: int) -> list[float]:
    """Forward and backward ``grad_accum`` examples (longest first); their losses, NaN included."""
    result, accelerator = state.result, state.accelerator
    examples = [draw(result.micro_steps + k) for k in range(grad_accum)]
    result.micro_steps += grad_accum
    losses = []
    for k, example in enumerate(sorted(examples, key=lambda ex: -len(ex.input_ids))):
        last = k == grad_accum - 1
        sync = nullcontext() if last or accelerator is None else accelerator.no_sync(state.forward_model)
        with sync:
            loss = answer_loss(
                state.forward_model, example, state.device, state.precision, logits_to_keep=state.keep_logits
            )
            scaled = loss / grad_accum
            # Always backward, even a NaN: under DDP every process must join the all-reduce.
            (state.scaler.scale(scaled) if state.scaler is not None else scaled).backward()
        losses.append(float(loss.detach()))
        result.tokens += len(example.input_ids)
    return losses


def packed_gradients(state: TrainingState) -> list[float]:
    """One forward and backward of the step's sequences together (``packing.py``); their
    losses, NaN included."""
    result = state.result
    examples = state.step_draw.next_step()
    result.micro_steps = state.step_draw.drawn
    loss, per_sequence = batch_loss(
        state.forward_model, examples, state.device, state.precision, state.layout,
        logits_to_keep=state.keep_logits, pad_to=state.pad_to,
    )  # fmt: skip
    (state.scaler.scale(loss) if state.scaler is not None else loss).backward()
    result.tokens += sum(len(e.input_ids) for e in examples)
    return [float(v) for v in per_sequence.detach()]


OVERFLOW = "overflow"  # apply_gradients: the fp16 scaler skipped the update


def apply_gradients(state: TrainingState, max_grad_norm: float) -> bool | str:
    """Clip and step the optimizer (through the scaler in fp16). False when the
    gradient norm is not finite (the same on every process: gradients are all-reduced);
    ``OVERFLOW`` when the scaled gradients overflowed and the scaler skipped the update
    while its scale could still come down (below 1, gradients are non-finite as such)."""
    import torch

    params = [p for _, p in state.named_params]
    scaler = state.scaler
    if scaler is None:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf"))
        if not math.isfinite(float(norm)):
            return False
        state.optimizer.step()
        return True
    scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf"))
    scale = scaler.get_scale()
    scaler.step(state.optimizer)  # skips the update itself when the scaled gradients overflowed
    scaler.update()
    if scaler.get_scale() < scale:
        state.result.scaler_skips += 1
        return OVERFLOW if scale >= 1 else False
    return True


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


# ---------------------------------------------------------------- helpers


class NonFiniteGuard:
    """Skips steps with a NaN/inf loss or gradient; after ``patience`` in a row, puts
    back the last weights known to give a finite loss (a copy kept every
    ``snapshot_every`` steps, promoted once the step after it comes out finite)."""

    def __init__(self, named_params, patience: int, snapshot_every: int):
        self.params = [p for _, p in named_params]
        self.patience, self.snapshot_every = patience, snapshot_every
        self.good = self._copy()
        self.pending = None
        self.bad_in_row = 0

    def _copy(self):
        return [p.detach().clone() for p in self.params]

    def offer_snapshot(self, step: int) -> None:
        self.pending = self._copy() if step % self.snapshot_every == 0 else None

    def accept(self) -> None:
        self.bad_in_row = 0
        if self.pending is not None:
            self.good = self.pending  # these weights just gave a finite loss

    def reject(self) -> bool:
        """Count a bad step; True (weights restored) when patience runs out."""
        import torch

        self.bad_in_row += 1
        if self.bad_in_row < self.patience:
            return False
        with torch.no_grad():
            for p, saved in zip(self.params, self.good):
                p.copy_(saved)
        return True


class StepTimer:
    """A moving average of step times: no step starts that would end past the deadline.
    ``clock`` gives the time now on the deadline's scale (``time.time``; a test's own)."""

    def __init__(self, deadline: float | None, clock: Callable[[], float] = time.time):
        self.deadline, self.clock = deadline, clock
        self.average: float | None = None

    def would_overrun(self) -> bool:
        return self.deadline is not None and self.clock() + (self.average or 0.0) > self.deadline

    def record(self, seconds: float) -> None:
        self.average = seconds if self.average is None else 0.7 * self.average + 0.3 * seconds

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()


class StepLog:
    """A debug line every ``every`` steps (mean loss since the last line); warnings for
    skipped steps. Only the main process logs."""

    def __init__(self, name: str, total: int, every: int, main: bool):
        self.name, self.total, self.every, self.main = name, total, every, main
        self.window: list[float] = []

    def step(
        self, result: TrainResult, loss: float, lr: float, seconds_left: float | None, val: float | None = None
    ) -> None:
        self.window.append(loss)
        if not self.main or (result.steps % self.every and result.steps != self.total and val is None):
            return
        left = f", {seconds_left:.0f}s before the deadline" if seconds_left is not None else ""
        shown = f" val loss {val:.4f}" if val is not None else ""
        log.log(
            logging.INFO if val is not None else logging.DEBUG,  # validation lines reach the screen
            "%s: step %d/%d loss %.4f%s lr %.2e %.0f tokens/s%s",
            self.name,
            result.steps,
            self.total,
            sum(self.window) / len(self.window),
            shown,
            lr,
            result.tokens_per_second,
            left,
        )
        self.window.clear()

    def validation(self, result: TrainResult, val: float) -> None:
        if self.main:
            log.info("%s: step %d/%d val loss %.4f (at the stop)", self.name, result.steps, self.total, val)

    def skipped(self, step: int, losses: list[float], in_row: int) -> None:
        if self.main:
            shown = ", ".join(f"{v:.4g}" for v in losses)
            log.warning(
                "%s: step %d: non-finite loss or gradient (%s), step skipped (%d in a row)",
                self.name,
                step,
                shown,
                in_row,
            )

    def stopped(self, message: str) -> None:
        if self.main:
            log.warning("%s: %s and stopped", self.name, message)


def example_source(examples: Examples, seed: int, stream: str, process: int) -> Callable[[int], TokenizedPrompt]:
    """micro-step -> example: cycled from a list, or drawn fresh with a per-step generator."""
    if callable(examples):
        return lambda micro: examples(micro, step_rng(seed, stream, process, micro))
    return lambda micro: examples[micro % len(examples)]


def step_rng(seed: int, stream: str, process: int, micro_step: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{stream}:{process}:{micro_step}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@contextmanager
def training_mode(model, gradient_checkpointing: bool) -> Iterator[None]:
    """``model.train()`` (with gradient checkpointing when asked) for the block; the
    model's former mode and checkpointing are put back after."""
    base = _base_model(model)
    switch = gradient_checkpointing and not getattr(base, "is_gradient_checkpointing", False)
    if switch:  # non-reentrant: works with frozen inputs (LoRA) and with DDP
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        if switch:
            base.gradient_checkpointing_disable()
        model.train(was_training)


def model_device(model):
    return next(model.parameters()).device


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model
