"""One typed config for every step, read from TOML and saved beside every output.

Sections are plain dataclasses of plain values; later steps add their own section
here. Unknown keys and wrong types are errors that name the key, so a typo in a
config file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import read_toml, write_text_atomic

DROP_ORDERS = ("last", "first", "largest")


@dataclass
class PromptConfig:
    codec: str = "minimal"  # see arcsub.encoding
    system_prompt: str = (
        "Find the rule that turns each input grid into its output grid, then apply it to the test input."
    )
    input_label: str = "input"
    output_label: str = "output"
    max_seq_len: int = 8192  # prompt + answer tokens
    drop_order: str = "last"  # which train pairs to drop first when too long: last | first | largest
    min_train_pairs: int = 1

    def __post_init__(self):
        if self.drop_order not in DROP_ORDERS:
            raise ConfigError(f"prompt.drop_order = {self.drop_order!r}; use one of {', '.join(DROP_ORDERS)}")
        if self.max_seq_len < 16:
            raise ConfigError(f"prompt.max_seq_len = {self.max_seq_len}; it must be at least 16 tokens")
        if self.min_train_pairs < 1:
            raise ConfigError("prompt.min_train_pairs must be at least 1")


@dataclass
class AugmentConfig:
    """Which augmentations training and inference draw. Their randomness comes from
    ``finetune.seed`` (training draws) and ``inference.seed`` (inference plans)."""

    keep_background: bool = True  # colour 0 is never permuted
    permute_colors: bool = True
    shuffle_order: bool = True


FINETUNE_METHODS = ("lora", "full")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("cosine", "linear", "constant")
PACKINGS = ("auto", "packed", "padded")
ADAPTER_MODES = ("per_task", "shared")


@dataclass
class FinetuneConfig:
    """The fine-tuning engine (arcsub.finetune): test-time and offline."""

    method: str = "lora"  # lora | full (every weight trains: tiny models only)
    lora_rank: int = 32
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])  # names, or all-linear (not lm_head)
    use_rslora: bool = False  # scale by alpha/sqrt(rank) instead of alpha/rank
    use_dora: bool = False
    for_vllm: bool = True  # the adapter is served by vLLM: refuse what it cannot load (DoRA)
    # optimizer steps per task in `arcsub run` (TTFT; 0: none) or per run (offline); the kernel sizes its own
    # steps from measured time under kernel.max_steps
    steps: int = 100
    learning_rate: float = 1e-4
    embedding_lr_scale: float = 1.0  # embeddings and the output head, when they train, at this times the rate
    lr_schedule: str = "cosine"  # after warm-up: cosine | linear | constant
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 turns clipping off
    # fp16 only: the gradient scaler's first scale (torch's default). A step it skips while
    # finding its scale is done again and does not move the schedule.
    scaler_init_scale: float = 65536.0
    grad_accum: int = 1  # batch size is 1 sequence; this many per optimizer step
    # > 0: an optimizer step packs as many sequences as fit in this many tokens (at least
    # one) into one forward pass instead of one sequence; 0: one sequence per step
    tokens_per_step: int = 0
    # how several sequences share a forward pass: packed (one row, positions restarting,
    # no attention across sequences), padded (rows padded to the longest), auto: packed
    # where the model's attention keeps packed sequences apart
    packing: str = "auto"
    fused_optimizer: bool = False  # AdamW's fused kernel over the trainable weights (one launch, not one per tensor)
    # torch.compile of the model for packed steps (tokens_per_step): each step's row is
    # padded to a multiple of compile_bucket tokens, so a few shapes are compiled once and
    # reused by every task (CUDA graphs on top, on CUDA)
    compile: bool = False
    compile_bucket: int = 512
    precision: str = "auto"  # auto: bf16 on CUDA with bf16, fp16 + grad scaler on other CUDA (T4), fp32 on CPU
    gradient_checkpointing: bool = False
    max_seq_len: int | None = None  # training sequence budget; default prompt.max_seq_len
    learn_outputs: bool = False  # also learn every train output in the prompt, not only the answer
    # A peft LoRA adapter to start training from instead of a fresh one (its rank and modules
    # replace lora_rank and target_modules); "pretrained": the default's shipped ARC adapter,
    # on the chat model (default-chat), as TTFT's starting point. None: a fresh adapter.
    initial_adapter: str | None = None
    use_test_outputs: bool = False  # offline data with solutions: test pairs join the pool (never at Kaggle)
    adapter_mode: str = "per_task"  # per_task: one adapter per task | shared: one over the whole group
    nan_patience: int = 3  # non-finite steps in a row before restoring the last good weights and stopping
    snapshot_every: int = 10  # steps between copies of the trainable weights kept for that restore
    log_every: int = 10  # steps between log lines (in the log file)
    seed: int = 0
    checkpoint_every: int = 100  # offline runs: steps between resumable checkpoints
    keep_checkpoints: int = 2
    merge: bool = False  # also write the adapter merged into full weights (fp16-checked by arcsub finetune)
    # Offline pre-training (arcsub finetune; see docs/finetune.md). --data / --val-data override the lists.
    sources: list[str] = field(default_factory=list)  # "SOURCE" or "SOURCE@WEIGHT": prompts drawn by weight
    pairs_per_prompt: int = 0  # train pairs shown per prompt, drawn at random; 0: every other pair that fits
    variants: int = 0  # augmented prompts per task, tokenized once into a cached dataset; 0: drawn on the fly
    val_sources: list[str] = field(default_factory=list)  # held-out validation tasks (never trained on)
    # Sources never trained on (every evaluation set): their tasks, and copies of them under other
    # ids (the leakage guard's check), are left out; the adapter's manifest proves it per source.
    exclude_sources: list[str] = field(default_factory=list)
    val_tasks: int = 0  # tasks held out of the training sources for the validation loss
    eval_every: int = 100  # steps between validation losses (and one at the end)

    def __post_init__(self):
        choices = {
            "method": FINETUNE_METHODS,
            "precision": PRECISIONS,
            "lr_schedule": LR_SCHEDULES,
            "adapter_mode": ADAPTER_MODES,
            "packing": PACKINGS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"finetune.{key} = {getattr(self, key)!r}; use one of {', '.join(allowed)}")
        positive = (
            "lora_rank",
            "grad_accum",
            "nan_patience",
            "snapshot_every",
            "log_every",
            "eval_every",
            "compile_bucket",
        )
        for key in positive + ("checkpoint_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ConfigError(f"finetune.{key} = {getattr(self, key)}; it must be at least 1")
        for key in ("learning_rate", "lora_alpha", "scaler_init_scale", "embedding_lr_scale"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"finetune.{key} = {getattr(self, key)}; it must be positive")
        not_negative = ("steps", "warmup_steps", "weight_decay", "max_grad_norm", "tokens_per_step")
        for key in not_negative + ("pairs_per_prompt", "variants", "val_tasks"):
            if getattr(self, key) < 0:
                raise ConfigError(f"finetune.{key} = {getattr(self, key)}; it must not be negative")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"finetune.lora_dropout = {self.lora_dropout}; use a value in [0, 1)")
        if not self.target_modules:
            raise ConfigError("finetune.target_modules is empty; name the modules to adapt, or use ['all-linear']")
        if self.max_seq_len is not None and self.max_seq_len < 16:
            raise ConfigError(f"finetune.max_seq_len = {self.max_seq_len}; it must be at least 16 tokens")
        if self.tokens_per_step and self.grad_accum > 1:
            raise ConfigError(
                f"finetune.tokens_per_step = {self.tokens_per_step} with grad_accum = {self.grad_accum}: a packed step "
                "is one forward pass; set grad_accum = 1 and raise tokens_per_step for more tokens per step"
            )
        if self.compile and not self.tokens_per_step:
            raise ConfigError(
                "finetune.compile = true needs finetune.tokens_per_step > 0: compiled steps are packed rows padded "
                "to buckets (one sequence per step would compile a new shape for every length)"
            )
        if self.use_dora and self.for_vllm:
            raise ConfigError(
                "finetune.use_dora = true but vLLM cannot serve DoRA adapters; "
                "set use_dora = false, or for_vllm = false if the adapter is served another way"
            )


BACKENDS = ("vllm", "transformers")
SELECTIONS = ("votes", "scores", "combined", "hits")
ANSWER_BOUNDS = ("train", "window")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class InferenceConfig:
    """Multi-step inference (arcsub.inference): step 1 samples candidates under
    augmentations (AIRV), step 2 scores the best candidates under more augmentations."""

    backend: str = "vllm"  # vllm | transformers
    num_augmentations: int = 8  # step 1: augmented prompts per test input
    samples_per_prompt: int = 1  # completions per prompt (must be 1 when temperature is 0)
    temperature: float = 0.0  # 0 = greedy
    min_p: float = 0.0  # sampling: drop tokens less likely than min_p x the likeliest one; 0 = off
    # > 0: depth-first sampling (transformers backend) instead of n samples: every completion
    # whose probability is at least this (at most 1/dfs_min_prob of them); 0 = off
    dfs_min_prob: float = 0.0
    dfs_keep_greedy: bool = False  # depth-first sampling also keeps the greedy completion, however unlikely
    answer_margin: int = 2  # rows and columns added to the answer-size bound from the train outputs
    # train: an answer may be as large as that bound; window: up to 30x30 where the window has
    # room after the prompt (the bound still decides which train pairs fit)
    answer_bound: str = "train"
    scoring: bool = True  # step 2 on/off
    score_augmentations: int = 8  # step 2: augmentations each candidate is scored under
    max_candidates: int = 8  # step 2: candidates scored per test input (the best by votes)
    selection: str = "combined"  # votes | scores | combined | hits (see arcsub.selection.rank_candidates)
    seed: int = 0
    max_model_len: int | None = None  # default: the model's window (max_position_embeddings)
    dtype: str = "auto"  # auto: float16 on CUDA without bf16 (T4), bfloat16 with it, float32 on CPU
    gpu_memory_utilization: float = 0.85  # CUDA only
    kv_cache_gib: float | None = None  # CPU only: KV cache size; default from free memory
    enforce_eager: bool = False
    tensor_parallel_size: int = 1  # > 1 only when attention and kv heads divide by it
    enable_prefix_caching: bool = True  # n completions and augmentations share long prefixes
    max_lora_rank: int | None = None  # default: the largest rank among the adapters
    tasks_per_call: int = 16  # tasks whose prompts go to the engine together; results are saved after each call

    def __post_init__(self):
        choices = (("backend", BACKENDS), ("selection", SELECTIONS), ("dtype", DTYPES), ("answer_bound", ANSWER_BOUNDS))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ConfigError(f"inference.{key} = {getattr(self, key)!r}; use one of {', '.join(allowed)}")
        counts = ("num_augmentations", "samples_per_prompt", "score_augmentations", "max_candidates", "tasks_per_call")
        for key in counts:
            if getattr(self, key) < 1:
                raise ConfigError(f"inference.{key} = {getattr(self, key)}; it must be at least 1")
        if self.temperature < 0:
            raise ConfigError(f"inference.temperature = {self.temperature}; it must be 0 (greedy) or more")
        if not 0 <= self.min_p < 1:
            raise ConfigError(f"inference.min_p = {self.min_p}; use a value in [0, 1) (0 turns it off)")
        if not 0 <= self.dfs_min_prob < 1:
            raise ConfigError(f"inference.dfs_min_prob = {self.dfs_min_prob}; use a value in [0, 1) (0 turns it off)")
        if self.dfs_min_prob > 0 and self.backend != "transformers":
            raise ConfigError(
                "inference.dfs_min_prob needs backend = 'transformers' (vLLM has no depth-first sampling); "
                "set backend = 'transformers' or dfs_min_prob = 0"
            )
        if self.temperature == 0 and self.samples_per_prompt != 1:
            raise ConfigError("inference.samples_per_prompt must be 1 with temperature 0 (greedy samples agree)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"inference.gpu_memory_utilization = {self.gpu_memory_utilization}; use a share in (0, 1]"
            )


@dataclass
class KernelConfig:
    """How the Kaggle kernel (arcsub.kernel) spends its budget. Each task gets a slice
    of the time left, in proportion to its size; within it, test-time fine-tuning takes
    what measured inference leaves, and its step count is sized from measured step
    time, so the learning-rate schedule ends before the task's deadline."""

    train_share: float = 0.6  # of a task's slice, before any inference has been measured
    infer_share: float = 0.5  # the most of a fine-tuned task's slice that measured inference may take
    min_steps: int = 4  # fewer affordable steps than this: no fine-tuning for the task
    max_steps: int = 2000  # the kernel's ceiling on the steps a slice may buy; 0: no test-time fine-tuning
    min_augmentations: int = 2  # step 1 never drops below this many prompts per test input
    grace_s: float = 60.0  # a worker past its task's deadline by this much is killed
    smoke_tasks: int = 4  # placeholder test file: the full path on this many smallest tasks
    smoke_budget_s: float = 1800.0  # ... within this many seconds; the rest keep the fallback
    profile_machine: bool = False  # measure the machine (arcsub profile) instead of solving: profile.json

    @property
    def fine_tunes(self) -> bool:
        """Whether the kernel fine-tunes at test time (``max_steps`` above 0)."""
        return self.max_steps > 0

    def __post_init__(self):
        if not 0 < self.train_share < 1:
            raise ConfigError(f"kernel.train_share = {self.train_share}; use a share in (0, 1)")
        if not 0 < self.infer_share <= 1:
            raise ConfigError(f"kernel.infer_share = {self.infer_share}; use a share in (0, 1]")
        for key in ("min_steps", "min_augmentations", "smoke_tasks"):
            if getattr(self, key) < 1:
                raise ConfigError(f"kernel.{key} = {getattr(self, key)}; it must be at least 1")
        if self.max_steps < 0:
            raise ConfigError(f"kernel.max_steps = {self.max_steps}; use 0 (no test-time fine-tuning) or more")
        for key in ("grace_s", "smoke_budget_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"kernel.{key} = {getattr(self, key)}; it must be positive")


@dataclass
class Config:
    prompt: PromptConfig = field(default_factory=PromptConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)


def _build(cls: type, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _check_type(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r}: expected {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_check_type(v, item, key) for v in value]
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"{key} = {value!r}: expected {getattr(hint, '__name__', hint)}")
    return value


def config_from_dict(values: dict[str, Any]) -> Config:
    return _build(Config, values, "")


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    values = read_toml(path, ConfigError, missing="config file not found")
    try:
        return config_from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_toml(config: Config) -> str:
    lines: list[str] = []
    for section, values in dataclasses.asdict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:  # TOML has no null: absent means default
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def save_config(config: Config, path: str | Path) -> Path:
    return write_text_atomic(path, config_to_toml(config))
