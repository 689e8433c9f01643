"""The fine-tuning engine: test-time fine-tuning per task under a deadline, and the
offline fine-tuning behind ``arcsub finetune`` (same loop, see finetune_offline.py).

Typical use (the kernel, or the model-preparation checks)::

    from arcsub.config import Config
    from arcsub.finetune import load_for_training, train_task, save_adapter

    config = Config()                       # config.finetune: FinetuneConfig
    model, tokenizer = load_for_training("default", config)   # LoRA attached
    initial = trainable_state(model)
    for task in tasks:
        restore_trainable(model, initial)   # each task starts from the same adapter
        result = train_task(model, tokenizer, task, config, deadline=time.time() + 60)
        if result.stop_reason != "skipped":
            save_adapter(model, f"adapters/{task.id}", result=result)

or all of that in one call: ``train_tasks(model, tokenizer, tasks, config, out_dir,
deadline=...)``, which also does the shared-adapter mode (``finetune.adapter_mode =
"shared"``: one adapter trained on all the tasks) and skips tasks whose adapter is
already on disk (resume).

Pieces
  ``load_for_training(model, config, device=None)``  model + tokenizer, base weights in
        the precision's dtype (fp16 base on a T4), adapter attached (or every weight
        trainable with ``finetune.method = "full"``)
  ``attach_lora(model, finetune_config)``  a ``peft`` LoRA (rank, alpha, targets,
        rsLoRA, DoRA unless ``for_vllm``), adapter weights in fp32
  ``train_examples(model, examples, finetune_config, deadline=, max_steps=)``  the
        generic loop (finetune_loop.py): precision from the device, NaN/inf guard,
        warm-up schedule, gradient accumulation, checkpointing option, deadline
  ``train_task(model, tokenizer, task, config, deadline=, max_steps=)``  leave-one-out
        data with a fresh augmentation per step (finetune_data.py); a task whose
        smallest prompt does not fit comes back with ``stop_reason == "skipped"``
  ``save_adapter(model, dir)``  a peft adapter folder vLLM's ``LoRARequest`` loads
        (``adapter_config.json`` + ``adapter_model.safetensors``), written atomically
  ``save_merged(model, tokenizer, dir)``  the adapter merged into full weights
  ``load_adapter(base_model, dir)``  the saved adapter on a base model (transformers)

Every run returns a ``TrainResult``: steps, tokens/s, the loss per step, and why it
stopped (``max_steps``, ``deadline``, ``non_finite``, ``skipped``).

Deadlines are ``time.time()`` values. No step starts that is expected to end after
the deadline (the estimate is a moving average of past steps), so a run ends within
one step's time of it, usually before.

torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .config import Config, FinetuneConfig, save_config
from .errors import ConfigError, FinetuneError
from .finetune_data import LeaveOneOut
from .finetune_loop import (
    STOP_DEADLINE,
    STOP_MAX_STEPS,
    STOP_NON_FINITE,
    STOP_SKIPPED,
    Precision,
    TrainingState,
    TrainResult,
    resolve_precision,
    train_examples,
)
from .io import atomic_dir, write_json_atomic
from .tasks import Task

__all__ = [
    "STOP_DEADLINE",
    "STOP_MAX_STEPS",
    "STOP_NON_FINITE",
    "STOP_SKIPPED",
    "LeaveOneOut",
    "Precision",
    "TrainResult",
    "TrainingState",
    "attach_lora",
    "check_window",
    "default_device",
    "load_adapter",
    "load_for_training",
    "prepare_for_training",
    "resolve_precision",
    "resolve_target_modules",
    "restore_trainable",
    "save_adapter",
    "save_merged",
    "train_examples",
    "train_task",
    "train_tasks",
    "trainable_state",
]

log = logging.getLogger("arcsub.finetune")

RESULT_FILE = "train_result.json"
CONFIG_FILE = "config.toml"


# ---------------------------------------------------------------- model set-up


def default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_target_modules(model, names: Sequence[str]) -> list[str]:
    """Module names to adapt. ``all-linear``: every linear layer but the output head,
    by short name (q_proj, ..., down_proj), the form vLLM expects in adapter configs."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }
    if "all-linear" in names:
        if not linear:
            raise ConfigError("finetune.target_modules = ['all-linear'] but the model has no linear layers")
        return sorted(linear)
    everything = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [n for n in names if n not in everything]
    if unknown:
        raise ConfigError(
            f"finetune.target_modules: the model has no module named {', '.join(unknown)}; "
            f"its linear layers are {', '.join(sorted(linear))}"
        )
    return list(names)


def attach_lora(model, config: FinetuneConfig):
    """Wrap ``model`` in a peft LoRA adapter; adapter weights fp32, initialised from
    ``config.seed``. Refuses DoRA when ``config.for_vllm`` (vLLM cannot serve it)."""
    import torch
    from peft import LoraConfig, get_peft_model

    if config.use_dora and config.for_vllm:
        raise ConfigError(
            "finetune.use_dora = true but vLLM cannot serve DoRA adapters; "
            "set use_dora = false, or for_vllm = false if the adapter is served another way"
        )
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=resolve_target_modules(model, config.target_modules),
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        bias="none",  # vLLM serves no LoRA biases
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        peft_model = get_peft_model(model, lora)
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return peft_model


def prepare_for_training(model, config: FinetuneConfig):
    """``attach_lora`` for ``method = "lora"``; every weight trainable (fp32) for "full"."""
    import torch

    if config.method == "lora":
        return attach_lora(model, config)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # Adam needs fp32 master weights; autocast handles the rest
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def load_for_training(model: str | os.PathLike, config: Config, *, device=None):
    """Load ``model`` (a folder or ``default``) and its tokenizer, ready to train:
    base weights in the precision's dtype under LoRA (fp16 on a T4, fp32 on CPU),
    fp32 for full fine-tuning. Returns ``(model, tokenizer)``."""
    import torch
    from transformers import AutoModelForCausalLM

    from .models.default import resolve_model
    from .models.loading import load_tokenizer

    ft = config.finetune
    device = device or default_device()
    path = resolve_model(model)
    precision = resolve_precision(ft.precision, device)
    dtype = precision.base_dtype() if ft.method == "lora" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    tokenizer = load_tokenizer(path)
    return prepare_for_training(base, ft), tokenizer


def trainable_state(model) -> dict:
    """A copy of the trainable weights (the adapter), to start each task from."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore_trainable(model, state: dict) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name])


# ---------------------------------------------------------------- training


def _builder(tokenizer, config: Config):
    from .prompts import PromptBuilder

    return PromptBuilder(config.prompt, tokenizer)


def check_window(model, config: Config) -> int:
    """The training sequence budget, refused when it exceeds the model's window
    (positions past it were never trained: extend the context first)."""
    budget = config.finetune.max_seq_len or config.prompt.max_seq_len
    window = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if window is not None and budget > window:
        key = "finetune.max_seq_len" if config.finetune.max_seq_len else "prompt.max_seq_len"
        raise ConfigError(
            f"{key} = {budget} exceeds the model's window of {window} tokens; lower it, "
            "or extend the model's context first (arcsub model extend-context)"
        )
    return budget


def train_task(
    model,
    tokenizer,
    task: Task | Sequence[Task],
    config: Config,
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
    label: str | None = None,
) -> TrainResult:
    """Fine-tune on one task's leave-one-out prompts (or on a group of tasks: one
    shared adapter). Uses ``config.prompt`` (codec, budget), ``config.augment``
    (augmentation switches) and ``config.finetune``. A task whose smallest prompt does
    not fit ``finetune.max_seq_len`` (default ``prompt.max_seq_len``) is not trained:
    the result has ``stop_reason == "skipped"`` and the reason in ``message``."""
    tasks = [task] if isinstance(task, Task) else list(task)
    label = label or (tasks[0].id if len(tasks) == 1 else f"{len(tasks)} tasks")
    check_window(model, config)
    data = LeaveOneOut(tasks, _builder(tokenizer, config), config)
    if not len(data):
        reasons = "; ".join(f"{tid}: {why}" for tid, why in data.skipped.items())
        result = TrainResult(label=label, total_steps=max_steps or config.finetune.steps, stop_reason=STOP_SKIPPED)
        result.message = reasons
        log.info("%s: not trained (%s)", label, reasons)
        return result
    result = train_examples(
        model,
        data,
        config.finetune,
        deadline=deadline,
        max_steps=max_steps,
        label=label,
        stream=label,
    )
    if data.skipped:
        result.message = "left out: " + "; ".join(f"{tid}: {why}" for tid, why in data.skipped.items())
    log.info("%s", result.summary())
    return result


def train_tasks(
    model,
    tokenizer,
    tasks: Sequence[Task],
    config: Config,
    out_dir: str | os.PathLike,
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
) -> dict[str, TrainResult]:
    """Train and save adapters for ``tasks`` by ``config.finetune.adapter_mode``:

    per_task  one adapter per task in ``out_dir/<task_id>/``; every task starts from
              the same initial adapter; the time left before ``deadline`` is shared
              evenly among the tasks still to train; a task whose adapter folder
              already holds a result is not trained again (resume)
    shared    one adapter over all the tasks in ``out_dir/shared/``

    The config is saved as ``out_dir/config.toml``. Returns results by task id (the
    shared mode gives every task the one shared result)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / CONFIG_FILE)
    if config.finetune.adapter_mode == "shared":
        result = train_task(model, tokenizer, tasks, config, deadline=deadline, max_steps=max_steps, label="shared")
        if result.stop_reason != STOP_SKIPPED:
            _save_trained(model, tokenizer, out / "shared", config, result)
        return {task.id: result for task in tasks}

    initial = trainable_state(model)
    results: dict[str, TrainResult] = {}
    for index, task in enumerate(tasks):
        target = out / task.id
        if (target / RESULT_FILE).is_file():
            results[task.id] = TrainResult.from_dict(_read_json(target / RESULT_FILE))
            log.info("%s: adapter already in %s, not trained again", task.id, target)
            continue
        task_deadline = None
        if deadline is not None:
            task_deadline = time.time() + max(0.0, deadline - time.time()) / (len(tasks) - index)
        restore_trainable(model, initial)
        result = train_task(model, tokenizer, task, config, deadline=task_deadline, max_steps=max_steps)
        results[task.id] = result
        if result.stop_reason == STOP_SKIPPED:
            write_json_atomic(out / f"{task.id}.skipped.json", result.to_dict(), indent=1)
        else:
            _save_trained(model, tokenizer, target, config, result)
    restore_trainable(model, initial)
    return results


def _read_json(path: Path):
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _save_trained(model, tokenizer, target: Path, config: Config, result: TrainResult) -> None:
    save_adapter(model, target, tokenizer=tokenizer if config.finetune.method == "full" else None, result=result)
    if config.finetune.merge and config.finetune.method == "lora":
        save_merged(model, tokenizer, target.with_name(target.name + ".merged"))


# ---------------------------------------------------------------- saving


def _unwrap(model):
    """The model inside a DistributedDataParallel wrapper."""
    import torch

    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_adapter(model, out_dir: str | os.PathLike, *, tokenizer=None, result: TrainResult | None = None) -> Path:
    """Save the trained weights to ``out_dir``, atomically (temp folder, rename).

    LoRA: a peft adapter folder (``adapter_config.json``, ``adapter_model.safetensors``)
    that ``PeftModel.from_pretrained`` and vLLM's ``LoRARequest(name, id, out_dir)``
    load. Full fine-tuning: a Hugging Face model folder (pass the tokenizer to save it
    beside). ``result`` is written as ``train_result.json``."""
    model = _unwrap(model)
    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        if hasattr(model, "peft_config"):
            # Embeddings are never trained here; "auto" could copy them into the adapter.
            model.save_pretrained(tmp, save_embedding_layers=False)
        else:
            model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if result is not None:
            write_json_atomic(tmp / RESULT_FILE, result.to_dict(), indent=1)
    return target


def save_merged(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Merge a copy of the LoRA model into full weights and save it with the tokenizer
    (the model passed in keeps its adapter). The weights keep the base's dtype."""
    model = _unwrap(model)
    if not hasattr(model, "merge_and_unload"):
        raise FinetuneError("save_merged needs a LoRA (peft) model; a fully fine-tuned model is saved as it is")
    merged = copy.deepcopy(model).merge_and_unload()
    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def load_adapter(model, adapter_dir: str | os.PathLike, *, trainable: bool = False):
    """A saved adapter on ``model`` (a base model loaded with transformers)."""
    from peft import PeftModel

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise FinetuneError(f"{path}: not a peft adapter folder (no adapter_config.json); train one first")
    return PeftModel.from_pretrained(model, path, is_trainable=trainable)
