"""``arcsub model inspect``: the facts that decide whether a model can be the
submission model, for a local model folder or a registered candidate.

Everything derived (parameters, KV cache, tensor parallelism, T4 fit) comes from the
config values through :mod:`arcsub.models.config_facts`, so a local folder and a
published config go through the same arithmetic. A local folder adds what only the
files can tell: the parameter count from the weights, the largest absolute weight
(fp16 overflows past 65504), the tokenizer's chat template and special tokens, and
whether the installed vLLM lists the architecture.

The T4 estimate: fp16 weights + the fp16 KV cache of one sequence of
``max_model_len`` tokens + a fixed allowance for the CUDA context and activations,
against 15 GiB (a Kaggle T4). The sequences column is how many such sequences vLLM
could hold at once in its default 90% share of the card.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..console import say
from ..errors import ModelNotFoundError
from . import config_facts as facts
from .default import DEFAULT_NAME, default_model_dir
from .loading import read_config
from .registry import CANDIDATES, CandidateModel, get_candidate
from .replicas import REPLICA_FILE

GIB = 1024**3
T4_BYTES = 15 * GIB
T4_VLLM_SHARE = 0.9  # vLLM's default gpu_memory_utilization
# CUDA context, activations, sampler buffers: an allowance, not a measurement.
RUNTIME_ALLOWANCE_BYTES = 1 * GIB
FP16_MAX = 65504.0


@dataclass
class ModelFacts:
    name: str
    source: str  # a folder path, or "published config"
    config: dict[str, Any]
    params: int | None = None
    params_from: str = "config"  # weights | config
    published_params: str | None = None
    tokenizer: str | None = None  # a description, or None when unknown
    tokenizer_size: int | None = None
    chat_template: bool | None = None
    bos: str | None = None
    eos: str | None = None
    pad: str | None = None
    max_abs_weight: float | None = None
    vllm: bool | None = None
    vllm_note: str = ""
    notes: str = ""
    unknown: tuple[str, ...] = ()

    def __post_init__(self):
        if self.params is None:
            self.params = facts.count_parameters(self.config)


@dataclass(frozen=True)
class T4Estimate:
    weights_bytes: int
    kv_bytes: int  # one sequence of max_model_len tokens
    total_bytes: int
    fits: bool
    sequences: int  # max_model_len sequences in vLLM's share, after weights and allowance


def t4_estimate(params: int | None, config: dict[str, Any], max_model_len: int) -> T4Estimate | None:
    per_token = facts.kv_cache_bytes_per_token(config)
    if params is None or per_token is None:
        return None
    weights, kv = 2 * params, per_token * max_model_len
    total = weights + kv + RUNTIME_ALLOWANCE_BYTES
    room = T4_BYTES * T4_VLLM_SHARE - weights - RUNTIME_ALLOWANCE_BYTES
    return T4Estimate(weights, kv, total, total <= T4_BYTES, max(0, int(room // kv)))


# ---------------------------------------------------------------- gathering


def candidate_facts(candidate: CandidateModel) -> ModelFacts:
    tok = candidate.tokenizer
    return ModelFacts(
        name=candidate.name,
        source=f"published config ({candidate.repo})",
        config=candidate.config,
        published_params=candidate.published_params,
        tokenizer=tok.description,
        chat_template=tok.chat_template,
        bos=tok.bos,
        eos=tok.eos,
        pad=tok.pad,
        vllm=candidate.vllm,
        vllm_note="" if candidate.vllm else "not in vLLM's model registry; remote code only",
        notes=candidate.notes,
        unknown=candidate.unknown,
    )


def folder_facts(path: str | os.PathLike, name: str | None = None) -> ModelFacts:
    path = Path(path)
    config = read_config(path)
    result = ModelFacts(name=name or path.name, source=str(path), config=config)
    _add_weight_facts(result, path)
    _add_tokenizer_facts(result, path)
    replica = path / REPLICA_FILE
    if replica.is_file():
        result.notes = f"random-weight replica of {json.loads(replica.read_text()).get('candidate')}"
    result.vllm, result.vllm_note = vllm_support(config)
    return result


def _weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def _add_weight_facts(result: ModelFacts, path: Path) -> None:
    """Count parameters and find the largest |weight|, one tensor at a time."""
    files = _weight_files(path)
    if not files:
        result.notes = "no safetensors weights: parameters from the config, weight range unknown"
        return
    from safetensors import safe_open

    count, largest = 0, 0.0
    for file in files:
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_tensor(key)
                count += tensor.numel()
                if tensor.is_floating_point() and tensor.numel():
                    largest = max(largest, float(tensor.abs().max()))
    result.params, result.params_from, result.max_abs_weight = count, "weights", largest


def _add_tokenizer_facts(result: ModelFacts, path: Path) -> None:
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        result.tokenizer = "none in the folder"
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    result.tokenizer = type(tokenizer).__name__
    result.tokenizer_size = len(tokenizer)
    result.chat_template = bool(getattr(tokenizer, "chat_template", None))
    result.bos, result.eos = tokenizer.bos_token, tokenizer.eos_token
    result.pad = tokenizer.pad_token or "none"


@lru_cache(maxsize=1)
def _vllm_architectures() -> frozenset[str] | None:
    try:
        from vllm.model_executor.models.registry import ModelRegistry
    except ImportError:
        return None
    return frozenset(ModelRegistry.get_supported_archs())


def vllm_support(config: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the installed vLLM serves the architecture without remote code."""
    architectures = config.get("architectures") or []
    if config.get("auto_map"):
        return False, "needs remote code (auto_map in config.json)"
    known = _vllm_architectures()
    if known is None:
        return None, "vLLM not installed"
    if not architectures:
        return None, "config.json names no architecture"
    if architectures[0] in known:
        return True, ""
    return False, f"{architectures[0]} is not in vLLM's model registry"


# ---------------------------------------------------------------- table


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def _count(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def published_count(text: str | None) -> int | None:
    """'135M' -> 135_000_000, '0.49B' -> 490_000_000."""
    if not text or text[-1] not in "MB":
        return None
    try:
        return int(float(text[:-1]) * (1e6 if text[-1] == "M" else 1e9))
    except ValueError:
        return None


def _maybe(value: Any, unknown: str = "unknown") -> str:
    return unknown if value is None else str(value)


def _heads_text(config: dict[str, Any], index: int) -> str:
    heads = facts.layer_heads(config)
    if heads is None:
        return "unknown"
    values = sorted({pair[index] for pair in heads})
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]} (per layer)"


def _tied_text(item: ModelFacts) -> str:
    tied = None if "tie_word_embeddings" in item.unknown else facts.tied_embeddings(item.config)
    return {True: "yes", False: "no", None: "unknown"}[tied]


def fact_rows(item: ModelFacts, max_model_len: int) -> list[tuple[str, str]]:
    """(fact, value) rows for one model, every derived value computed here."""
    cfg = item.config
    arch = (cfg.get("architectures") or ["unknown"])[0]
    params = _count(item.params) + (" (weights)" if item.params_from == "weights" else "")
    if item.published_params:
        params += f"; published {item.published_params}"
    window = facts.context_window(cfg)
    vocab = _maybe(cfg.get("vocab_size"))
    if item.tokenizer_size is not None:
        vocab += f" (tokenizer {item.tokenizer_size})"
    blockers = facts.tensor_parallel_blockers(cfg, 2)
    tp = "unknown" if blockers is None else ("yes" if not blockers else "no: " + "; ".join(blockers))
    if item.max_abs_weight is None:
        weight_range = "unknown (no weights here)"
    else:
        verdict = "fits fp16" if item.max_abs_weight < FP16_MAX else "OVERFLOWS fp16"
        weight_range = f"{item.max_abs_weight:.3g} ({verdict})"
    vllm = {True: "yes", False: "no", None: "unknown"}[item.vllm] + (f" ({item.vllm_note})" if item.vllm_note else "")
    estimate = t4_estimate(item.params, cfg, max_model_len)
    weights_note = ""
    if estimate is None and item.params is None:
        estimate = t4_estimate(published_count(item.published_params), cfg, max_model_len)
        weights_note = " (published count)"
    if estimate is None:
        t4 = ("unknown",) * 4
    else:
        t4 = (
            _gib(estimate.weights_bytes) + weights_note,
            _gib(estimate.kv_bytes),
            f"{_gib(estimate.total_bytes)}: {'fits' if estimate.fits else 'DOES NOT FIT'} in 15 GiB",
            str(estimate.sequences),
        )
    template = {True: "yes", False: "no", None: "unknown"}[item.chat_template]
    return [
        ("source", item.source),
        ("architecture", arch),
        ("vLLM serves it", vllm),
        ("parameters", params),
        ("layers", _maybe(facts.num_layers(cfg))),
        ("hidden size", _maybe(facts.hidden_size(cfg))),
        ("attention heads", _heads_text(cfg, 0)),
        ("key/value heads", _heads_text(cfg, 1)),
        ("head dim", _maybe(facts.head_dim(cfg))),
        ("max_position_embeddings", _maybe(window)),
        ("RoPE", _maybe(facts.rope_summary(cfg), "unknown" if "rope_theta" in item.unknown else "none")),
        ("sliding window", _maybe(facts.sliding_window(cfg), "none")),
        ("vocabulary", vocab),
        ("tied embeddings", _tied_text(item)),
        ("tokenizer", _maybe(item.tokenizer)),
        ("chat template", template),
        ("bos / eos / pad", " / ".join(_maybe(t) for t in (item.bos, item.eos, item.pad))),
        ("TP=2 on vLLM", tp),
        ("largest abs weight", weight_range),
        ("T4 fp16 weights", t4[0]),
        (f"T4 KV cache, 1 × {max_model_len} tokens", t4[1]),
        (f"T4 total (+{RUNTIME_ALLOWANCE_BYTES // GIB} GiB runtime)", t4[2]),
        (f"{max_model_len}-token sequences in 90% of a T4", t4[3]),
        ("notes", item.notes or "-"),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(items: list[ModelFacts], max_model_len: int) -> str:
    """One column per model, one row per fact."""
    columns = [dict(fact_rows(item, max_model_len)) for item in items]
    lines = ["| fact | " + " | ".join(_cell(item.name) for item in items) + " |", "|---" * (len(items) + 1) + "|"]
    for fact in columns[0]:
        lines.append("| " + " | ".join(_cell(text) for text in [fact] + [column[fact] for column in columns]) + " |")
    return "\n".join(lines)


def as_json(items: list[ModelFacts], max_model_len: int) -> list[dict[str, Any]]:
    out = []
    for item in items:
        estimate = t4_estimate(item.params, item.config, max_model_len)
        out.append(
            {
                "name": item.name,
                "source": item.source,
                "params": item.params,
                "params_from": item.params_from,
                "tp2_blockers": facts.tensor_parallel_blockers(item.config, 2),
                "kv_bytes_per_token_fp16": facts.kv_cache_bytes_per_token(item.config),
                "max_abs_weight": item.max_abs_weight,
                "vllm": item.vllm,
                "chat_template": item.chat_template,
                "eos": item.eos,
                "pad": item.pad,
                "t4": None if estimate is None else estimate.__dict__,
                "rows": dict(fact_rows(item, max_model_len)),
            }
        )
    return out


def gather(targets: list[str], *, candidates: bool = False, notify: Callable[[str], None] = say) -> list[ModelFacts]:
    """Facts for each target: ``default``, a model folder, or a candidate name;
    ``candidates`` appends every registered candidate."""
    items = []
    for target in targets:
        if target == DEFAULT_NAME:
            items.append(folder_facts(default_model_dir(notify=notify), name="default"))
        elif Path(target).is_dir():
            items.append(folder_facts(target))
        elif Path(target).exists():
            raise ModelNotFoundError(f"{target}: not a folder; pass a Hugging Face model folder")
        else:
            items.append(candidate_facts(get_candidate(target)))
    if candidates:
        items += [candidate_facts(c) for c in CANDIDATES]
    if not items:
        raise ModelNotFoundError(
            "nothing to inspect; give a model folder, 'default', a candidate name, or --candidates"
        )
    return items
