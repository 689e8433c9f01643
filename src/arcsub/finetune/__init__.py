"""The fine-tuning engine: test-time fine-tuning per task under a deadline, and the
offline fine-tuning behind ``arcsub finetune`` (same loop).

Typical use (the kernel, or the model checks)::

    from arcsub.config import Config
    from arcsub.finetune import load_for_training, train_tasks
    from arcsub.models import resolve_model

    config = Config()                                          # config.finetune
    folder = resolve_model("default")                          # the name resolved once: a folder
    model, tokenizer = load_for_training(folder, config)       # LoRA attached
    results = train_tasks(model, tokenizer, tasks, config, "adapters", deadline=deadline)

``train_tasks`` gives every task the same initial adapter, shares the time left
before the deadline among the tasks still to train by their size (``task_slice``,
``slices.py``: the kernel shares its deadline the same way), skips tasks whose adapter is
already on disk (resume), and trains one shared adapter with
``finetune.adapter_mode = "shared"``.

The public entry
  ``load_for_training(model, config, device=None)``  a model folder's model + tokenizer, base weights in
        the precision's dtype (fp16 base on a T4), adapter attached (or every weight
        trainable with ``finetune.method = "full"``)
  ``attach_lora(model, finetune_config)``  a ``peft`` LoRA (rank, alpha, targets,
        rsLoRA, DoRA unless ``for_vllm``), adapter weights in fp32
  ``train_examples(model, examples, finetune_config, deadline=, max_steps=)``  the
        generic loop (``loop.py``): precision from the device, NaN/inf guard, warm-up
        schedule, gradient accumulation, checkpointing option, deadline
  ``train_task(model, tokenizer, task, config, deadline=, max_steps=)``  leave-one-out
        data with a fresh augmentation per step (``data.py``); a task whose smallest
        prompt does not fit comes back with ``stop_reason == "skipped"``
  ``train_tasks(...)``  the above for many tasks, adapters saved (``ttft.py``)
  ``task_slice(weight, waiting_weight, now, deadline, busy_until=())``  a task's share
        of the time left (``slices.py``): the one way a deadline is shared across tasks
  ``expected_step_tokens(task, tokenizer, config)``  the tokens a step of that task will
        carry (one sequence, or a packed ``finetune.tokens_per_step``): what the
        kernel prices a step by
  ``save_adapter(model, dir)``  a peft adapter folder vLLM's ``LoRARequest`` loads,
        written atomically; ``save_merged(model, tokenizer, dir)`` the adapter merged
        into full weights; ``load_adapter(base_model, dir)`` (``adapters.py``)
  ``trainable_state(model)`` / ``restore_trainable(model, state)``  start tasks from
        the same adapter (``model.py``)

Every run returns a ``TrainResult`` (``result.py``): steps, tokens/s, the loss per
step, and why it stopped (``max_steps``, ``deadline``, ``non_finite``, ``skipped``).
Deadlines are ``time.time()`` values. No step starts that is expected to end after
the deadline (a moving average of past steps), so a run ends within one step's time
of it, usually before. ``arcsub finetune`` (offline, resumable, data parallel) is
``offline.py``; at pre-training scale it draws from several sources by weight
(``sources.py``, ``mixture.py``), optionally from a tokenized ``datasets`` cache
(``cache.py``), with a validation loss on held-out tasks (``validation.py``), all put
together in ``corpus.py``.

torch, transformers and peft are imported inside the functions that need them.
"""

from .adapters import load_adapter, pack_adapter, save_adapter, save_merged
from .loop import train_examples
from .model import attach_lora, load_for_training, restore_trainable, trainable_state, training_lora_rank
from .offline import read_run, run_offline, time_limit_deadline
from .result import STOP_DEADLINE, STOP_MAX_STEPS, STOP_NON_FINITE, STOP_SKIPPED, TrainResult
from .slices import task_slice
from .sources import parse_sources
from .ttft import expected_step_tokens, train_task, train_tasks

__all__ = [
    "STOP_DEADLINE",
    "STOP_MAX_STEPS",
    "STOP_NON_FINITE",
    "STOP_SKIPPED",
    "TrainResult",
    "attach_lora",
    "expected_step_tokens",
    "load_adapter",
    "load_for_training",
    "pack_adapter",
    "parse_sources",
    "read_run",
    "restore_trainable",
    "run_offline",
    "save_adapter",
    "save_merged",
    "task_slice",
    "time_limit_deadline",
    "train_examples",
    "train_task",
    "train_tasks",
    "trainable_state",
    "training_lora_rank",
]
