"""The analytic estimate: a cost model from a model's config and an accelerator's
datasheet, for when nothing was measured. Every number it rests on is in
``assumptions`` and printed with the plan; a measured ``profile.json`` replaces it.

Training (LoRA, batch 1, T tokens): the frozen base needs no weight gradients, so a
step is about 4·N·T FLOPs for the N non-embedding parameters (2·N·T forward, 2·N·T for
the input gradients), plus attention 3 × 4·layers·T²·d_q (forward QKᵀ and AV, backward
twice that; no causal saving assumed), plus the output head over the answer tokens
only (6·vocab·hidden per answer token), divided by the peak tensor throughput times a
utilisation. Generation: prefill is compute-bound (2·N per prompt token plus causal
attention); a decode step is bound by memory traffic (all weights once per step, every
sequence's KV cache) plus its FLOPs, plus a fixed per-step overhead (eager mode, as the
2024 T4 solutions ran vLLM). Scoring is a prefill whose logits are computed at every
position (vLLM's ``prompt_logprobs``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import config_facts as facts
from .cost_model import CostModel, Fit, ProfilingError

GIB = 1024**3


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: float  # dense fp16/bf16 tensor FLOP/s (fp32 on CPU), datasheet
    bandwidth: float  # bytes/s, datasheet
    bytes_per_value: int  # weights and KV in memory
    note: str


ACCELERATORS = {
    "T4": Accelerator("Tesla T4", 65e12, 320e9, 2, "NVIDIA T4 datasheet: 65 TFLOPS fp16 tensor (mixed), 320 GB/s"),
    "L4": Accelerator("NVIDIA L4", 121e12, 300e9, 2, "NVIDIA L4 datasheet: 121 TFLOPS fp16/bf16 dense, 300 GB/s"),
    "H100": Accelerator("NVIDIA H100", 989e12, 3350e9, 2, "H100 SXM datasheet: 989 TFLOPS bf16 dense, 3.35 TB/s"),
    "H200": Accelerator("NVIDIA H200", 989e12, 4800e9, 2, "H200 datasheet: 989 TFLOPS bf16 dense, 4.8 TB/s"),
}
CPU_FLOPS_PER_CORE = 40e9  # fp32, AVX2 FMA at ~2.5 GHz, a realistic sustained figure
CPU_BANDWIDTH = 20e9

# Utilisations and overheads: assumptions, printed with every analytic plan.
TRAIN_UTILISATION = 0.10
PREFILL_UTILISATION = 0.20
BANDWIDTH_UTILISATION = 0.6
DECODE_STEP_OVERHEAD_S = 0.010
TRAIN_STEP_OVERHEAD_S = 0.05
PREFILL_OVERHEAD_S = 0.02
ENGINE_START_S = 60.0
LOAD_BANDWIDTH = 1e9  # bytes/s from disk into the GPU, plus 3 s
CUDA_CONTEXT_BYTES = 1 * GIB
ANSWER_TOKENS_TRAINED = 145  # median answer of arc1/evaluation (minimal codec)
GENERATION_BATCH_CAP = 64


def accelerator_for(gpu_name: str, accelerator: str = "cuda", cpus: int = 1) -> Accelerator:
    if accelerator == "cpu":
        return Accelerator(
            f"CPU ({cpus} cores)",
            CPU_FLOPS_PER_CORE * cpus,
            CPU_BANDWIDTH,
            4,
            f"{CPU_FLOPS_PER_CORE / 1e9:g} GFLOPS fp32 per core, {CPU_BANDWIDTH / 1e9:g} GB/s (rough, AVX2)",
        )
    for key, spec in ACCELERATORS.items():
        if key.lower() in gpu_name.lower():
            return spec
    raise ProfilingError(
        f"no datasheet figures for GPU {gpu_name!r} (known: {', '.join(ACCELERATORS)}); "
        "measure a profile on it with `arcsub profile measure` and pass it with --from"
    )


def _lora_params(cfg: dict, rank: int) -> int:
    """LoRA A and B on every linear layer of a llama-like block (q, k, v, o, gate, up, down)."""
    heads, hidden, dim = facts.layer_heads(cfg), facts.hidden_size(cfg), facts.head_dim(cfg)
    inter = cfg.get("intermediate_size") or 4 * hidden
    total = 0
    for q, kv in heads:
        shapes = [(hidden, q * dim), (hidden, kv * dim), (hidden, kv * dim), (q * dim, hidden)]
        shapes += [(hidden, inter), (hidden, inter), (inter, hidden)]
        total += sum(rank * (a + b) for a, b in shapes)
    return total


def analytic_cost_model(
    cfg: dict,
    *,
    label: str,
    gpu_name: str,
    accelerator: str = "cuda",
    cpus: int = 1,
    gpu_memory_gb: float | None = None,
    vllm_memory_share: float = 0.35,
    lora_rank: int = 32,
    plan_tokens: int = 4096,
) -> CostModel:
    """A cost model from FLOPs and bandwidth for the model ``cfg`` (a config.json dict)."""
    spec = accelerator_for(gpu_name, accelerator, cpus)
    params = facts.count_parameters(cfg)
    heads, hidden, layers = facts.layer_heads(cfg), facts.hidden_size(cfg), facts.num_layers(cfg)
    vocab, dim, tied = cfg.get("vocab_size"), facts.head_dim(cfg), facts.tied_embeddings(cfg)
    if None in (params, heads, hidden, layers, vocab, dim, tied):
        raise ProfilingError(f"{label}: its config lacks facts the estimate needs (parameters, heads, vocabulary)")
    embedding = vocab * hidden * (1 if tied else 2)
    body = params - embedding  # non-embedding parameters
    d_q = sum(q for q, _ in heads) * dim / layers  # query width per layer
    kv_per_token = facts.kv_cache_bytes_per_token(cfg, spec.bytes_per_value)
    train_rate = spec.peak_flops * TRAIN_UTILISATION
    prefill_rate = spec.peak_flops * PREFILL_UTILISATION
    bandwidth = spec.bandwidth * BANDWIDTH_UTILISATION
    head_flops = 2 * vocab * hidden  # output head, per token, forward

    train = Fit(
        ("1", "T", "T^2"),
        (
            TRAIN_STEP_OVERHEAD_S + 3 * head_flops * ANSWER_TOKENS_TRAINED / train_rate,
            4 * body / train_rate,
            3 * 4 * layers * d_q / train_rate,
        ),
    )
    inter = cfg.get("intermediate_size") or 4 * hidden
    activation_per_token = layers * (32 * hidden + 8 * inter)
    lora = _lora_params(cfg, lora_rank) if cfg.get("model_type") != "openelm" else 0
    fixed_memory = (
        spec.bytes_per_value * params + 16 * lora + CUDA_CONTEXT_BYTES + 3 * 4 * vocab * ANSWER_TOKENS_TRAINED
    )
    memory = Fit(("1", "T"), (float(fixed_memory), float(activation_per_token)))
    weights_bytes = spec.bytes_per_value * params
    prefill = Fit(
        ("1", "B", "B*P", "B*P^2"),
        (PREFILL_OVERHEAD_S, head_flops / prefill_rate, 2 * body / prefill_rate, 2 * layers * d_q / prefill_rate),
    )
    decode = Fit(
        ("1", "B", "B*C"),
        (
            DECODE_STEP_OVERHEAD_S + weights_bytes / bandwidth,
            (2 * body + head_flops) / prefill_rate,
            kv_per_token / bandwidth + 4 * layers * d_q / prefill_rate,
        ),
    )
    score = Fit(
        ("1", "B*L", "B*L^2"),
        (PREFILL_OVERHEAD_S, (2 * body + head_flops) / prefill_rate, 2 * layers * d_q / prefill_rate),
    )
    batch = GENERATION_BATCH_CAP
    batch_note = f"generation and scoring in batches of {batch} sequences"
    if accelerator == "cuda" and gpu_memory_gb:
        room = vllm_memory_share * gpu_memory_gb * 1e9 - weights_bytes - CUDA_CONTEXT_BYTES
        fitting = int(room // (kv_per_token * plan_tokens)) if room > 0 else 0
        batch = max(1, min(GENERATION_BATCH_CAP, fitting))
        batch_note = (
            f"generation and scoring in batches of {batch} sequences: the KV cache of {plan_tokens}-token "
            f"sequences that fits vLLM's {vllm_memory_share:g} share of {gpu_memory_gb:g} GB after the weights "
            f"and 1 GiB, capped at {GENERATION_BATCH_CAP}"
        )
    bytes_name = "fp16" if spec.bytes_per_value == 2 else "fp32"
    assumptions = [
        (
            f"{label}: {params / 1e6:.0f}M parameters ({body / 1e6:.0f}M outside the embeddings), {layers} layers, "
            f"KV cache {kv_per_token / 1024:.1f} KiB per token ({bytes_name})"
        ),
        f"accelerator {spec.name}: {spec.note}",
        (
            f"TTFT step = 4·N·T + 12·layers·T²·d_q FLOPs (LoRA r={lora_rank}: no weight gradients for the frozen base, "
            f"no gradient checkpointing) + the head over {ANSWER_TOKENS_TRAINED} answer tokens, at "
            f"{TRAIN_UTILISATION:.0%} of peak (the 2024 report, 160 steps x 100 tasks of Qwen2.5-0.5B in ~3 h 55 on "
            f"2x T4, 1.76 s per step, matches this formula at ~6% for 3k-token prompts; their prompt lengths are not reported), + {TRAIN_STEP_OVERHEAD_S:g} s per step"
        ),
        (
            "TTFT peak memory = weights + 16 bytes per LoRA weight (fp32 weight, gradient, 2 Adam moments) + 1 GiB "
            "CUDA context + answer logits + (32·hidden + 8·intermediate) bytes per token per layer of activations "
            "(fp16 autocast, fp32 norms, attention scores not stored); rough"
        ),
        f"prefill and scoring at {PREFILL_UTILISATION:.0%} of peak; scoring computes logits at every position",
        (
            f"a decode step reads all weights and each sequence's KV cache at {BANDWIDTH_UTILISATION:.0%} of the "
            f"bandwidth, adds its FLOPs, and pays {DECODE_STEP_OVERHEAD_S * 1000:g} ms of per-step overhead (eager mode)"
        ),
        batch_note,
        f"model load {LOAD_BANDWIDTH / 1e9:g} GB/s + 3 s; vLLM engine start {ENGINE_START_S:g} s (assumed)",
    ]
    return CostModel(
        label=label,
        source=f"analytic: {spec.name}",
        device=spec.name,
        fits={"train_step_s": train, "prefill_s": prefill, "decode_step_s": decode, "score_s": score}
        | ({"train_memory_bytes": memory} if accelerator == "cuda" else {}),
        load_s=weights_bytes / LOAD_BANDWIDTH + 3.0,
        engine_start_s=ENGINE_START_S,
        generation_batch=batch,
        params=params,
        assumptions=assumptions,
        settings={"lora_rank": lora_rank, "precision": bytes_name},
    )
