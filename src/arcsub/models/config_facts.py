"""Architecture facts read from a model's ``config.json`` as a plain dict.

Shared by the candidate registry (published configs, no weights), ``arcsub model
inspect`` (local folders), context extension and the test replicas. Nothing here
imports torch or transformers. A function returns ``None`` when a value it needs is
absent from the config: the caller prints "unknown", never a guess.

Three config dialects are read: Hugging Face Llama-style (llama, mistral, qwen2, ...),
old-style RoPE keys (``rope_theta`` / ``rope_scaling`` beside ``rope_parameters``),
and OpenELM's remote-code keys (per-layer head lists, ``model_dim``, ``rope_freq_constant``).
"""

from __future__ import annotations

from typing import Any

Config = dict[str, Any]

# Hugging Face config classes default tie_word_embeddings to False for these families.
_UNTIED_BY_DEFAULT = {"llama", "mistral", "qwen2"}


def num_layers(cfg: Config) -> int | None:
    return cfg.get("num_hidden_layers", cfg.get("num_transformer_layers"))


def hidden_size(cfg: Config) -> int | None:
    return cfg.get("hidden_size", cfg.get("model_dim"))


def layer_heads(cfg: Config) -> list[tuple[int, int]] | None:
    """(query heads, key/value heads) for every layer; OpenELM varies them per layer."""
    layers = num_layers(cfg)
    query = cfg.get("num_attention_heads", cfg.get("num_query_heads"))
    # A config without num_key_value_heads is multi-head attention (HF semantics).
    kv = cfg.get("num_key_value_heads", cfg.get("num_kv_heads", query))
    if layers is None or query is None:
        return None
    query = query if isinstance(query, list) else [query] * layers
    kv = kv if isinstance(kv, list) else [kv] * layers
    if len(query) != layers or len(kv) != layers:
        return None
    return list(zip(query, kv))


def head_dim(cfg: Config) -> int | None:
    if cfg.get("head_dim"):
        return cfg["head_dim"]
    heads, hidden = cfg.get("num_attention_heads"), hidden_size(cfg)
    if isinstance(heads, int) and hidden:
        return hidden // heads
    return None


def context_window(cfg: Config) -> int | None:
    """The trained window the config declares (``max_position_embeddings``)."""
    return cfg.get("max_position_embeddings", cfg.get("max_context_length"))


def usable_window(cfg: Config) -> int | None:
    """The longest sequence the model is set up for: the declared window, times the
    factor of linear or dynamic RoPE scaling (these keep ``max_position_embeddings``
    at the trained window and scale positions; vLLM derives its length the same way)."""
    window = context_window(cfg)
    params = rope_parameters(cfg) or {}
    if window and params.get("rope_type") in ("linear", "dynamic") and params.get("factor"):
        return int(window * float(params["factor"]))
    return window


def tied_embeddings(cfg: Config) -> bool | None:
    if "tie_word_embeddings" in cfg:
        return bool(cfg["tie_word_embeddings"])
    if "share_input_output_layers" in cfg:
        return bool(cfg["share_input_output_layers"])
    if cfg.get("model_type") in _UNTIED_BY_DEFAULT:
        return False
    return None


def rope_parameters(cfg: Config) -> dict[str, Any] | None:
    """The RoPE settings as one flat dict (``rope_theta``, ``rope_type``, ``factor`` ...),
    whichever dialect the config uses; None when the config names no RoPE setting."""
    if isinstance(cfg.get("rope_parameters"), dict) and cfg["rope_parameters"]:
        params = dict(cfg["rope_parameters"])
    else:
        params = {}
    # Old dialect: transformers 5 gives rope_scaling priority over rope_parameters.
    if isinstance(cfg.get("rope_scaling"), dict):
        params = {**params, **cfg["rope_scaling"]}
    for key in ("rope_theta", "rotary_emb_base", "rope_freq_constant"):
        if key in cfg and "rope_theta" not in params:
            params["rope_theta"] = float(cfg[key])
    if not params:
        return None
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    params.setdefault("rope_type", "default")
    return params


def rope_summary(cfg: Config) -> str | None:
    params = rope_parameters(cfg)
    if params is None:
        return None
    theta = params.get("rope_theta")
    text = f"theta {theta:g}" if theta is not None else "theta unknown"
    if params["rope_type"] != "default":
        extra = ", ".join(f"{k} {v}" for k, v in sorted(params.items()) if k not in ("rope_theta", "rope_type"))
        text += f", {params['rope_type']} scaling ({extra})"
    return text


def sliding_window(cfg: Config) -> int | None:
    """The attention window when sliding-window attention is on, else None."""
    window = cfg.get("sliding_window")
    if not window or cfg.get("use_sliding_window") is False:
        return None
    return int(window)


def _make_divisible(value: float, divisor: int) -> int:
    """OpenELM's rounding of layer-wise FFN widths (from its configuration code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _layer_params_openelm(cfg: Config, hidden: int, dim: int, query: int, kv: int, index: int) -> int:
    ffn = _make_divisible(cfg["ffn_multipliers"][index] * hidden, cfg.get("ffn_dim_divisor", 256))
    attention = hidden * (query + 2 * kv) * dim + query * dim * hidden
    qk_norms = 2 * dim if cfg.get("normalize_qk_projections") else 0
    mlp = hidden * (2 * ffn if cfg.get("ffn_with_glu", True) else ffn) + ffn * hidden
    return attention + qk_norms + mlp + 2 * hidden


def _layer_params_llama_like(cfg: Config, hidden: int, dim: int, query: int, kv: int) -> int | None:
    intermediate = cfg.get("intermediate_size")
    if intermediate is None:
        return None
    attention = hidden * (query + 2 * kv) * dim + query * dim * hidden
    if cfg.get("model_type") == "qwen2":
        attention += (query + 2 * kv) * dim  # q/k/v biases, no o_proj bias
    elif cfg.get("attention_bias"):
        attention += (query + 2 * kv) * dim + hidden
    mlp = 3 * hidden * intermediate + (2 * intermediate + hidden if cfg.get("mlp_bias") else 0)
    return attention + mlp + 2 * hidden  # two RMSNorm weights


def count_parameters(cfg: Config) -> int | None:
    """Parameters implied by the config (embeddings counted once when tied)."""
    heads, hidden, dim = layer_heads(cfg), hidden_size(cfg), head_dim(cfg)
    vocab, tied = cfg.get("vocab_size"), tied_embeddings(cfg)
    if None in (heads, hidden, dim, vocab, tied):
        return None
    total = vocab * hidden * (1 if tied else 2) + hidden  # embeddings (+ head) and the final norm
    for index, (query, kv) in enumerate(heads):
        if cfg.get("model_type") == "openelm":
            if "ffn_multipliers" not in cfg:
                return None
            layer = _layer_params_openelm(cfg, hidden, dim, query, kv, index)
        else:
            layer = _layer_params_llama_like(cfg, hidden, dim, query, kv)
        if layer is None:
            return None
        total += layer
    return total


def kv_cache_bytes_per_token(cfg: Config, bytes_per_value: int = 2) -> int | None:
    """Keys and values of every layer for one token (fp16: 2 bytes a value)."""
    heads, dim = layer_heads(cfg), head_dim(cfg)
    if heads is None or dim is None:
        return None
    return 2 * sum(kv for _, kv in heads) * dim * bytes_per_value


GIB = 1 << 30
CUDA_CONTEXT_BYTES = GIB
ANSWER_TOKENS_TRAINED = 145  # median answer of arc1/evaluation (minimal codec)


def lora_parameters(cfg: Config, rank: int) -> int | None:
    """LoRA A and B on every linear layer of a llama-like block (q, k, v, o, gate, up,
    down); 0 for OpenELM (its fused projections are not adapted this way)."""
    if cfg.get("model_type") == "openelm":
        return 0
    heads, hidden, dim = layer_heads(cfg), hidden_size(cfg), head_dim(cfg)
    if None in (heads, hidden, dim):
        return None
    inter = cfg.get("intermediate_size") or 4 * hidden
    total = 0
    for q, kv in heads:
        shapes = [(hidden, q * dim), (hidden, kv * dim), (hidden, kv * dim), (q * dim, hidden)]
        shapes += [(hidden, inter), (hidden, inter), (inter, hidden)]
        total += sum(rank * (a + b) for a, b in shapes)
    return total


def activation_bytes_per_token(cfg: Config, *, checkpointing: bool = False) -> int | None:
    """Activations a LoRA training step keeps per token for the backward pass (fp16
    autocast, fp32 norms, attention scores not stored): every layer's, or with gradient
    checkpointing each layer's input (fp16) plus one layer's while it is recomputed. Rough."""
    hidden, layers = hidden_size(cfg), num_layers(cfg)
    if hidden is None or layers is None:
        return None
    per_layer = 32 * hidden + 8 * (cfg.get("intermediate_size") or 4 * hidden)
    return layers * 2 * hidden + per_layer if checkpointing else layers * per_layer


def lora_training_bytes(
    cfg: Config, tokens: int, *, lora_rank: int, bytes_per_value: int = 2, checkpointing: bool = False
) -> int | None:
    """Peak GPU memory of a LoRA training step of ``tokens`` tokens: the frozen weights, 16
    bytes per LoRA weight (fp32 weight, gradient, 2 Adam moments), the CUDA context, the
    answer's logits, and the activations (``activation_bytes_per_token``). Rough: it is
    the analytic estimate ``arcsub profile`` prints, a measured profile is better."""
    params, lora = count_parameters(cfg), lora_parameters(cfg, lora_rank)
    activations, vocab = activation_bytes_per_token(cfg, checkpointing=checkpointing), cfg.get("vocab_size")
    if None in (params, lora, activations, vocab):
        return None
    fixed = bytes_per_value * params + 16 * lora + CUDA_CONTEXT_BYTES + 3 * 4 * vocab * ANSWER_TOKENS_TRAINED
    return fixed + tokens * activations


def tensor_parallel_blockers(cfg: Config, size: int) -> list[str] | None:
    """Why vLLM would refuse ``tensor_parallel_size=size`` (empty: it would not).

    vLLM splits attention heads across GPUs: their count must divide by ``size``;
    key/value heads must too, unless there are fewer of them than GPUs and they can be
    replicated (``size % kv == 0``)."""
    heads = layer_heads(cfg)
    if heads is None:
        return None
    blockers = [f"{q} attention heads not divisible by {size}" for q in sorted({q for q, _ in heads}) if q % size]
    for kv in sorted({kv for _, kv in heads}):
        if (kv >= size and kv % size) or (kv < size and size % kv):
            blockers.append(f"{kv} key/value heads not divisible by {size}")
    return blockers
