"""Offline fine-tuning: ``arcsub finetune --model M --data SOURCE[@WEIGHT] ... --out DIR``.

One adapter (or, with ``finetune.method = "full"``, the whole model) trained on the
leave-one-out prompts of the tasks of one or more sources, mixed by weight, with the
engine's loop (``arcsub.finetune.loop.train_examples``): this is how a submission
model is made, from a short fine-tune to the ARC pre-training recipe (several
sources, RE-ARC style generated tasks, a tokenized cache, held-out validation tasks;
``corpus.py`` and the modules it names).

Layout of ``DIR``::

    run.json                  model and data of the run (what --resume needs): sources,
                              weights, task counts, held-out tasks, the data cache used
    config.toml               the run's config (finetune.sources holds the --data specs)
    checkpoints/step-000100/  trainer_state.pt (trainable weights, optimizer, schedule,
                              gradient scaler, progress), config.toml, adapter/ (LoRA)
    adapter/ | model/         the final weights (peft adapter | full model), with
                              train_result.json and arcsub-training.json
    merged/                   with finetune.merge: the adapter merged into full weights,
                              fp16-checked (the outcome in train_result.json)

A run stops at ``finetune.steps`` (or ``--steps``) or at the time limit, and always
leaves a checkpoint: ``arcsub finetune --out DIR --resume [--steps N]`` continues it
with the saved config (data drawn per process and micro-step from the seed, on the fly
or from the same cached dataset, so the resumed run sees what the uninterrupted one
would have).

Data parallel: the same command under ``accelerate launch --multi_gpu --num_processes
N .venv/bin/arcsub finetune ...``: each process draws different prompts, gradients are
all-reduced every step (effective batch = N x grad_accum), only the main process logs
and writes (the data cache is built by the main process first; the others open it).
Without GPUs the same launch runs N CPU processes over gloo (accelerate's ``--cpu``
flag would start a single process). Use a fresh --out per run.

The merged model is checked for fp16 overflow by the ``fp16_check`` the caller passes
(``arcsub finetune`` passes ``arcsub.checks.fp16``'s, which sits above this package):
an overflow is recorded and raised as a ``FinetuneError``, so a model that cannot
serve on a T4 never leaves silently.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import Config, save_config
from ..errors import ArcsubError, FinetuneError
from ..io import atomic_dir, read_json, write_json_atomic
from ..leakage import (
    TRAINING_MANIFEST,
    TrainingManifest,
    read_training_manifest,
    seen_tasks,
    write_training_manifest,
)
from ..models import model_folder
from ..prompts import PromptBuilder
from .adapters import RESULT_FILE, save_adapter, save_merged
from .corpus import Corpus, load_corpus, training_prompts
from .loop import TrainingState, train_examples
from .model import load_for_training
from .result import TrainResult
from .sources import parse_source
from .ttft import check_window, steps_to_train
from .validation import ValidationSet

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
    """The run's ``run.json``; ``data`` and ``val_data`` as lists (older runs held one string)."""
    if not (out_dir / RUN_FILE).is_file():
        raise FinetuneError(f"{out_dir}: holds no fine-tuning run ({RUN_FILE} missing); start one without `resume`")
    run = read_json(out_dir / RUN_FILE, FinetuneError, fix="start the run again without `resume`")
    return run | {"data": _as_list(run.get("data") or []), "val_data": _as_list(run.get("val_data") or [])}


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
    model: str | os.PathLike,
    data: str | Sequence[str] | None,
    out_dir: str | os.PathLike,
    config: Config,
    *,
    val_data: str | Sequence[str] | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    deadline: float | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    fp16_check: Fp16Check | None = None,
    model_name: str | None = None,
) -> TrainResult:
    """Train on the tasks of ``data`` (``SOURCE[@WEIGHT]`` specs; default
    ``finetune.sources``) into ``out_dir`` (layout in the module docstring), with a
    validation loss on ``val_data`` (default ``finetune.val_sources``) and
    ``finetune.val_tasks`` held-out tasks.

    ``resume``: continue from the last checkpoint (``config`` should be the run's saved
    one, see ``read_run``). Without it, ``out_dir`` must not hold checkpoints.
    ``cache_dir``: where tokenized datasets are cached (``finetune.variants``).
    ``fp16_check(folder, source, max_tokens) -> dict``: run on the merged model.
    ``model`` is a model folder; ``model_name``: what the user named it (``default``),
    recorded in run.json for ``--resume``."""
    import torch
    from accelerate import Accelerator

    out = Path(out_dir)
    found = _checkpoints_for(out, resume)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    total = steps_to_train(config, max_steps)
    # Bad sources or a bad model fail before anything is written.
    config, corpus = _with_sources(config, data, val_data, skip_invalid)
    ft = config.finetune
    model = model_folder(model)
    run_info = {"model": model_name or str(model), "data": ft.sources, "val_data": ft.val_sources}
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # a resumed run keeps its run.json (and the cache it names) until rewritten below
            write_json_atomic(out / RUN_FILE, run_info, indent=1)
        save_config(config, out / "config.toml")

    net, tokenizer = load_for_training(model, config, device=accelerator.device)
    budget = check_window(net, config)
    builder = PromptBuilder(config.prompt, tokenizer)
    examples, described = training_prompts(
        corpus, config, builder, cache_dir=Path(cache_dir) if cache_dir else None, accelerator=accelerator,
        progress=progress,
    )  # fmt: skip
    validation = _validation_set(corpus, builder, config, budget)
    base_manifest = read_training_manifest(model)
    if main:
        _record_data(out, run_info, described, corpus, validation, base_manifest, accelerator.num_processes, total)
    resume_state = None
    if resume:
        resume_state = torch.load(found[-1] / STATE_FILE, map_location="cpu", weights_only=True)
        if main:
            log.info("resuming from %s", found[-1])
    checkpointer = Checkpointer(out, config, saved=resume_state["result"]["steps"] if resume_state else -1, main=main)
    result = train_examples(
        net,
        examples,
        ft,
        deadline=deadline,
        max_steps=total,
        label="finetune",
        stream="offline",
        accelerator=accelerator,
        resume_state=resume_state,
        on_step=checkpointer.on_step,
        progress=progress,
        evaluate=validation.evaluate if validation is not None else None,
    )
    if accelerator.num_processes > 1:
        tokens = torch.tensor([float(result.tokens)], device=accelerator.device)
        result.tokens = int(accelerator.reduce(tokens, "sum").item())
    overflow = None
    if main:
        checkpointer.finish(result)  # the run can always resume
        overflow = _save_final(net, tokenizer, out, ft, result, corpus, base_manifest, budget, fp16_check)
    accelerator.wait_for_everyone()
    if overflow:
        raise FinetuneError(overflow)
    return result


def _checkpoints_for(out: Path, resume: bool) -> list[Path]:
    """The run's checkpoints, oldest first: some to resume from, or none for a new run."""
    found = checkpoints(out)
    if found and not resume:
        raise FinetuneError(f"{out}: holds checkpoints of another run; pass `resume` to continue it, or a new `out`")
    if resume and not found:
        raise FinetuneError(f"{out}: has no checkpoint to resume; start the run without `resume`")
    return found


def _with_sources(
    config: Config, data: str | Sequence[str] | None, val_data: str | Sequence[str] | None, skip_invalid: bool
) -> tuple[Config, Corpus]:
    """The corpus of ``data`` and ``val_data`` (default: the config's sources), and the
    config with the sources it was read from (what the saved config and run.json hold).
    Errors name the flag, or the config key when the sources came from the config."""
    ft = config.finetune
    where = "finetune.sources" if data is None and ft.sources else "--data"
    data = _as_list(data) if data is not None else ft.sources
    val_where = "finetune.val_sources" if val_data is None and ft.val_sources else "--val-data"
    val_data = _as_list(val_data) if val_data is not None else ft.val_sources
    corpus = load_corpus(
        data, val_data, config, where=where, val_where=val_where, exclude=ft.exclude_sources,
        skip_invalid=skip_invalid,
    )  # fmt: skip
    specs = [str(s.spec) for s in corpus.sources]
    val_specs = [str(parse_source(v, val_where)) for v in val_data]
    return dataclasses.replace(config, finetune=dataclasses.replace(ft, sources=specs, val_sources=val_specs)), corpus


def _validation_set(corpus: Corpus, builder: PromptBuilder, config: Config, budget: int) -> ValidationSet | None:
    """The held-out tasks' prompts (None without held-out tasks); refused when none fits."""
    if not corpus.validation:
        return None
    validation = ValidationSet.build(corpus.validation, builder, config)
    if not len(validation):
        raise FinetuneError(
            f"no validation prompt fits {budget} tokens ({len(corpus.validation)} held-out task(s)); "
            "raise finetune.max_seq_len or hold out other tasks"
        )
    return validation


def _record_data(
    out: Path, run_info: dict, described: dict, corpus: Corpus, validation, base_manifest, processes: int, total: int
) -> None:
    """What the run trains and validates on: into run.json and the log; a warning when
    the base model was trained on validation tasks."""
    described["validation"] = {"tasks": len(corpus.validation), "prompts": len(validation or ())}
    described["validation"]["too_long"] = validation.too_long if validation else []
    write_json_atomic(out / RUN_FILE, run_info | described, indent=1)
    _log_data(corpus, described, processes, total)
    if base_manifest is not None and validation is not None:
        seen = seen_tasks(corpus.validation, base_manifest)
        if seen:
            log.warning(
                "%d validation task(s) were trained on by the base model (its %s): their loss is not held out",
                len(seen), TRAINING_MANIFEST,
            )  # fmt: skip


class Checkpointer:
    """Checkpoints every ``finetune.checkpoint_every`` steps (main process only), and a
    last one at the end when the last step was not saved: a run can always resume."""

    def __init__(self, out: Path, config: Config, *, saved: int, main: bool):
        self.out, self.config, self.main = out, config, main
        self.saved = saved  # the step of the last checkpoint (-1: none)
        self.state: TrainingState | None = None  # the loop's state after its last step

    def on_step(self, state: TrainingState) -> None:
        self.state = state
        ft = self.config.finetune
        if state.result.steps % ft.checkpoint_every == 0 and self.main:
            save_checkpoint(state, self.out, self.config, ft.keep_checkpoints)
            self.saved = state.result.steps

    def finish(self, result: TrainResult) -> None:
        if self.state is not None and self.saved != result.steps:
            save_checkpoint(self.state, self.out, self.config, self.config.finetune.keep_checkpoints)
            self.saved = result.steps


def _save_final(
    net, tokenizer, out: Path, ft, result: TrainResult, corpus: Corpus, base_manifest, budget: int, fp16_check
) -> str | None:
    """The final weights with what they were trained on (evaluations refuse those tasks),
    merged and fp16-checked with ``finetune.merge``; the overflow message, if any."""
    final = out / ("adapter" if ft.method == "lora" else "model")
    manifest = base_manifest or TrainingManifest()
    for source in corpus.sources:
        manifest.add(source.spec.source, source.tasks)
    manifest.hold_out(corpus.validation)
    leaked = [e for e in (manifest.exclude(s.spec.source, s.tasks) for s in corpus.excluded) if e["seen"]]
    if leaked:  # the hold-out makes this impossible; weights that say otherwise are never written
        counts = "; ".join(f"{e['source']}: {e['seen']}" for e in leaked)
        raise FinetuneError(f"{final}: trained on excluded tasks ({counts}); these weights are not saved")
    save_adapter(net, final, tokenizer=tokenizer if ft.method == "full" else None, result=result)
    write_training_manifest(final, manifest)
    overflow = None
    if ft.merge:
        overflow = _merge_and_check(net, tokenizer, out, final, manifest, result, corpus, budget, fp16_check)
    log.debug("%s", result.summary())  # the command prints it
    log.info("weights: %s", final)
    return overflow


Fp16Check = Callable[[Path, str, int], dict]


def _merge_and_check(net, tokenizer, out, final, manifest, result, corpus, budget, fp16_check) -> str | None:
    """Write ``merged/`` (LoRA) and fp16-check the servable folder; the outcome goes
    into ``train_result.json`` beside both. Returns the overflow message, if any."""
    served = final
    if hasattr(net, "peft_config"):  # LoRA: merge; a full fine-tune is served as it is
        served = save_merged(net, tokenizer, out / "merged")
        write_training_manifest(served, manifest)
    if fp16_check is None:
        result.fp16 = {"checked": False, "reason": "no fp16 check given; run arcsub model check-fp16 on it"}
        log.warning("%s: not checked for fp16 (run arcsub model check-fp16 %s)", served, served)
    else:
        try:
            result.fp16 = {"checked": True} | fp16_check(served, corpus.sources[0].spec.source, min(budget, 2048))
        except ArcsubError as exc:  # e.g. no prompt fits: say so, loudly, but keep the weights
            result.fp16 = {"checked": False, "reason": str(exc)}
            log.warning("%s: fp16 check could not run: %s", served, exc)
    for folder in {final, served}:
        write_json_atomic(folder / RESULT_FILE, result.to_dict(), indent=1)
    if not result.fp16.get("overflow"):
        if result.fp16.get("checked"):
            log.info("%s: fp16 check ok (largest activation %.4g)", served, result.fp16.get("max_abs_activation", 0))
        return None
    return (
        f"{served}: the merged model overflows in fp16 ({result.fp16.get('nonfinite_logits', '?')} non-finite "
        f"logits, largest activation {result.fp16.get('max_abs_activation', float('nan')):.4g} of 65504): it cannot "
        "serve on a T4; do not ship it (lower the learning rate or train with --precision fp16)"
    )


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _log_data(corpus: Corpus, described: dict, processes: int, total: int) -> None:
    for entry in described["sources"]:
        log.info(
            "%s: %d task(s) to train on (weight %g), %d skipped (too long)",
            entry["source"], entry["tasks_with_prompts"], entry["weight"], entry["skipped_too_long"],
        )  # fmt: skip
    if corpus.excluded:
        log.info(
            "excluded (never trained on): %s; %d training task(s) left out as their tasks or copies",
            ", ".join(f"{e['source']} ({e['tasks']} tasks)" for e in described["excluded"]), corpus.left_out_excluded,
        )  # fmt: skip
    if corpus.repeated:
        log.info("%d training task(s) left out: an earlier source holds the same id", corpus.repeated)
    if corpus.validation:
        val = described["validation"]
        log.info(
            "validation: %d held-out task(s), %d prompt(s); %d training task(s) left out as validation tasks or copies",
            val["tasks"], val["prompts"], corpus.left_out,
        )  # fmt: skip
    cache = described["cache"]
    if cache is not None:
        how = "reused" if cache["reused"] else f"built in {cache['build_seconds']:.1f}s"
        log.info("data cache %s: %s (%d prompts, %d per task)", how, cache["folder"], cache["rows"], cache["variants"])
    log.info("%d process(es), %d step(s)", processes, total)


def time_limit_deadline(minutes: float | None) -> float | None:
    return None if minutes is None else time.time() + 60.0 * minutes
