"""Offline fine-tuning: ``arcsub finetune --model M --data SOURCE --out DIR``.

One adapter (or, with ``finetune.method = "full"``, the whole model) trained on the
leave-one-out prompts of every task in a dataset, with the engine's loop
(``arcsub.finetune.loop.train_examples``): this is how a submission model is made.

Layout of ``DIR``::

    run.json                  model and data of the run (what --resume needs)
    config.toml               the run's config
    checkpoints/step-000100/  trainer_state.pt (trainable weights, optimizer, schedule,
                              gradient scaler, progress), config.toml, adapter/ (LoRA)
    adapter/ | model/         the final weights (peft adapter | full model), with
                              train_result.json
    merged/                   with finetune.merge: the adapter merged into full weights

A run stops at ``finetune.steps`` (or ``--steps``) or at the time limit, and always
leaves a checkpoint: ``arcsub finetune --out DIR --resume [--steps N]`` continues it
with the saved config (data drawn per process and micro-step from the seed, so the
resumed run sees what the uninterrupted one would have).

Data parallel: the same command under ``accelerate launch --multi_gpu --num_processes
N .venv/bin/arcsub finetune ...``: each process draws different prompts, gradients are
all-reduced every step (effective batch = N x grad_accum), only the main process logs
and writes. Without GPUs the same launch runs N CPU processes over gloo (accelerate's
``--cpu`` flag would start a single process). Use a fresh --out per run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from ..config import Config, save_config
from ..errors import FinetuneError
from ..io import atomic_dir, write_json_atomic
from ..leakage import TrainingManifest, read_training_manifest, write_training_manifest
from ..models.default import resolve_model
from ..prompts import PromptBuilder
from ..tasks import load_tasks
from .adapters import save_adapter, save_merged
from .data import LeaveOneOut
from .loop import TrainingState, train_examples
from .model import load_for_training
from .result import TrainResult
from .ttft import check_window, steps_to_train

log = logging.getLogger("arcsub.finetune")

RUN_FILE = "run.json"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints(out_dir: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    folder = out_dir / "checkpoints"
    found = [p for p in folder.iterdir() if _STEP_DIR.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def read_run(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FinetuneError(f"{out_dir}: holds no fine-tuning run ({RUN_FILE} missing); start one without --resume")


def save_checkpoint(state: TrainingState, out_dir: Path, config: Config, keep: int) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically and prune all but the last ``keep``."""
    import torch

    target = out_dir / "checkpoints" / f"step-{state.result.steps:06d}"
    with atomic_dir(target) as tmp:
        with open(tmp / STATE_FILE, "wb") as handle:
            torch.save(state.state_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        save_config(config, tmp / "config.toml")
        if hasattr(state.model, "peft_config"):
            save_adapter(state.model, tmp / "adapter")
    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint: %s", target)
    return target


def run_offline(
    model: str,
    data: str,
    out_dir: str | os.PathLike,
    config: Config,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    deadline: float | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train on every task of ``data`` into ``out_dir`` (layout in the module docstring).

    ``resume``: continue from the last checkpoint (``config`` should be the run's saved
    one, see ``read_run``). Without it, ``out_dir`` must not hold checkpoints."""
    import torch
    from accelerate import Accelerator

    out = Path(out_dir)
    found = checkpoints(out)
    if found and not resume:
        raise FinetuneError(f"{out}: holds checkpoints of another run; pass --resume to continue it, or a new --out")
    if resume and not found:
        raise FinetuneError(f"{out}: has no checkpoint to resume; start the run without --resume")

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    ft = config.finetune
    total = steps_to_train(config, max_steps)
    # A bad source or model fails before anything is written.
    tasks = load_tasks(data, skip_invalid=skip_invalid).tasks
    resolve_model(model)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_FILE, {"model": str(model), "data": data}, indent=1)
        save_config(config, out / "config.toml")
    net, tokenizer = load_for_training(model, config, device=accelerator.device)
    check_window(net, config)
    sampler = LeaveOneOut(tasks, PromptBuilder(config.prompt, tokenizer), config)
    if not len(sampler):
        raise FinetuneError(
            f"{data}: no task has a leave-one-out prompt within {ft.max_seq_len or config.prompt.max_seq_len} "
            "tokens; raise finetune.max_seq_len"
        )
    if main:
        log.info(
            "%s: %d task(s) to train on, %d skipped (too long), %d process(es), %d step(s)",
            data,
            len(sampler),
            len(sampler.skipped),
            accelerator.num_processes,
            total,
        )
    resume_state = None
    if resume:
        latest = found[-1]
        resume_state = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=True)
        if main:
            log.info("resuming from %s", latest)

    seen: dict = {"saved": resume_state["result"]["steps"] if resume_state else -1, "state": None}

    def on_step(state: TrainingState) -> None:
        seen["state"] = state
        if state.result.steps % ft.checkpoint_every == 0 and main:
            save_checkpoint(state, out, config, ft.keep_checkpoints)
            seen["saved"] = state.result.steps

    result = train_examples(
        net,
        sampler,
        ft,
        deadline=deadline,
        max_steps=total,
        label="finetune",
        stream="offline",
        accelerator=accelerator,
        resume_state=resume_state,
        on_step=on_step,
        progress=progress,
    )
    if accelerator.num_processes > 1:
        tokens = torch.tensor([float(result.tokens)], device=accelerator.device)
        result.tokens = int(accelerator.reduce(tokens, "sum").item())
    if main:
        if seen["state"] is not None and seen["saved"] != result.steps:
            save_checkpoint(seen["state"], out, config, ft.keep_checkpoints)  # the run can always resume
        final = out / ("adapter" if ft.method == "lora" else "model")
        save_adapter(net, final, tokenizer=tokenizer if ft.method == "full" else None, result=result)
        # What it trained on travels with the weights: evaluations refuse those tasks.
        manifest = read_training_manifest(model) if Path(str(model)).is_dir() else None
        manifest = manifest or TrainingManifest()
        manifest.add(data, tasks)
        write_training_manifest(final, manifest)
        if ft.merge and ft.method == "lora":
            save_merged(net, tokenizer, out / "merged")
            write_training_manifest(out / "merged", manifest)
        log.debug("%s", result.summary())  # the command prints it
        log.info("weights: %s", final)
    accelerator.wait_for_everyone()
    return result


def time_limit_deadline(minutes: float | None) -> float | None:
    return None if minutes is None else time.time() + 60.0 * minutes
