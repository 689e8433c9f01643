"""The analytic estimate: a cost model from a model's config and an accelerator's
datasheet, for when nothing was measured. Every number it rests on is in
``assumptions`` and printed with the plan; a measured ``profile.json`` replaces it.

Training (LoRA, batch 1, T tokens): the FLOPs of ``flops.py`` (the frozen base needs no
weight gradients: about 4·N·T, plus the adapter, causal attention and the head over the
answer tokens) divided by the peak tensor throughput times a utilisation, plus a fixed
overhead per step. That overhead comes from measured step times (``step_fit.py``:
``overhead_step + overhead_layer·layers``, fitted over several models on one device and
recorded with the device's name): the fit of the target device when there is one, else
a GPU's fit carried to another GPU (the overhead is kernel launches and Python, bound
by the host, not by the card's arithmetic; stated with the plan), else an assumed
0.05 s. The utilisation is the fit's only on the device it was measured on.
Generation: prefill is compute-bound (2·N per prompt token plus causal attention); a
decode step is bound by memory traffic (all weights once per step, every sequence's KV
cache) plus its FLOPs, plus a fixed per-step overhead (eager mode, as the 2024 T4
solutions ran vLLM). Scoring is a prefill whose logits are computed at every position
(vLLM's ``prompt_logprobs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import config_facts as facts
from .cost_model import CostModel, Fit, ProfilingError
from .flops import ACCELERATORS, FLOP_FORMULA, Accelerator, StepArithmetic, accelerator_key, step_arithmetic
from .step_fit import StepCostFit, recorded_fits

GIB = 1024**3

CPU_FLOPS_PER_CORE = 40e9  # fp32, AVX2 FMA at ~2.5 GHz, a realistic sustained figure
CPU_BANDWIDTH = 20e9

# Utilisations and overheads: assumptions, printed with every analytic plan.
TRAIN_UTILISATION = 0.10
PREFILL_UTILISATION = 0.20
BANDWIDTH_UTILISATION = 0.6
DECODE_STEP_OVERHEAD_S = 0.010
TRAIN_STEP_OVERHEAD_S = 0.05  # only when no measured fit exists (step_fit.py)
PREFILL_OVERHEAD_S = 0.02
ENGINE_START_S = 60.0
LOAD_BANDWIDTH = 1e9  # bytes/s from disk into the GPU, plus 3 s
CUDA_CONTEXT_BYTES = facts.CUDA_CONTEXT_BYTES
ANSWER_TOKENS_TRAINED = facts.ANSWER_TOKENS_TRAINED
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


def step_fit_for(spec: Accelerator, accelerator: str, fits: Sequence[StepCostFit]) -> tuple[StepCostFit | None, bool]:
    """(the fit to take the fixed step overhead from, whether it was measured on this
    very device). The target's own fit first; else, for a GPU, another GPU's (the one
    over the most steps); for a CPU, another CPU's. None: no fit applies."""
    key = accelerator_key(spec.name) if accelerator == "cuda" else None
    if key is not None:
        own = [f for f in fits if accelerator_key(f.device) == key]
        if own:
            return max(own, key=lambda f: (f.points, f.date)), True
    kin = [f for f in fits if f.is_cpu == (accelerator == "cpu")]
    if kin:
        return max(kin, key=lambda f: (f.points, f.date)), False
    return None, False


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
    step_fits: Sequence[StepCostFit] | None = None,
) -> CostModel:
    """A cost model from FLOPs and bandwidth for the model ``cfg`` (a config.json dict).
    ``step_fits``: measured fixed-cost fits to take the TTFT step overhead from (default:
    the ones recorded with arcsub, ``step_fits.json``; ``[]``: none, the assumed 0.05 s)."""
    spec = accelerator_for(gpu_name, accelerator, cpus)
    shape = _ModelShape.of(cfg, label, lora_rank, spec.bytes_per_value)
    fit, own_device = step_fit_for(spec, accelerator, recorded_fits() if step_fits is None else step_fits)
    seconds_per_flop = 1.0 / (spec.peak_flops * TRAIN_UTILISATION)
    if fit is not None and own_device and fit.seconds_per_flop:
        seconds_per_flop = fit.seconds_per_flop
    overhead = fit.overhead_s(shape.layers) if fit is not None else TRAIN_STEP_OVERHEAD_S
    flops = shape.arithmetic.terms()
    train = Fit(
        ("1", "T", "T^2"),
        (
            overhead + flops["A"] * ANSWER_TOKENS_TRAINED * seconds_per_flop,
            flops["T"] * seconds_per_flop,
            flops["T^2"] * seconds_per_flop,
        ),
    )
    # the same estimate as the kernel's gradient-checkpointing decision (config_facts)
    fixed_memory = facts.lora_training_bytes(cfg, 0, lora_rank=lora_rank, bytes_per_value=spec.bytes_per_value)
    memory = Fit(("1", "T"), (float(fixed_memory), float(facts.activation_bytes_per_token(cfg))))
    batch, batch_note = _generation_batch(shape, accelerator, gpu_memory_gb, vllm_memory_share, plan_tokens)
    bytes_name = "fp16" if spec.bytes_per_value == 2 else "fp32"
    assumptions = [
        (
            f"{label}: {shape.params / 1e6:.0f}M parameters ({shape.body / 1e6:.0f}M outside the embeddings), "
            f"{shape.layers} layers, KV cache {shape.kv_per_token / 1024:.1f} KiB per token ({bytes_name})"
        ),
        f"accelerator {spec.name}: {spec.note}",
        train_step_note(spec, accelerator, shape.layers, lora_rank, fit, own_device, seconds_per_flop),
        train_overhead_note(spec, shape.layers, fit, own_device),
        *_FIXED_NOTES,
        batch_note,
        f"model load {LOAD_BANDWIDTH / 1e9:g} GB/s + 3 s; vLLM engine start {ENGINE_START_S:g} s (assumed)",
    ]
    return CostModel(
        label=label,
        source=f"analytic: {spec.name}",
        device=spec.name,
        fits={"train_step_s": train, **_inference_fits(shape, spec)}
        | ({"train_memory_bytes": memory} if accelerator == "cuda" else {}),
        load_s=shape.weights_bytes / LOAD_BANDWIDTH + 3.0,
        engine_start_s=ENGINE_START_S,
        generation_batch=batch,
        params=shape.params,
        assumptions=assumptions,
        settings={"lora_rank": lora_rank, "precision": bytes_name},
    )


# The assumptions the estimate makes whatever the model (memory, prefill, decode).
_FIXED_NOTES = (
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
)


@dataclass(frozen=True)
class _ModelShape:
    """What the estimate reads from a model's config, for one LoRA rank and value width."""

    params: int
    body: float  # non-embedding parameters
    d_q: float  # query width per layer
    layers: int
    kv_per_token: float  # KV cache bytes per token
    head_flops: float  # output head, per token, forward
    weights_bytes: float
    arithmetic: StepArithmetic  # a training step's FLOPs by term

    @classmethod
    def of(cls, cfg: dict, label: str, lora_rank: int, bytes_per_value: int) -> _ModelShape:
        params = facts.count_parameters(cfg)
        heads, hidden, layers = facts.layer_heads(cfg), facts.hidden_size(cfg), facts.num_layers(cfg)
        vocab, dim, tied = cfg.get("vocab_size"), facts.head_dim(cfg), facts.tied_embeddings(cfg)
        arithmetic = step_arithmetic(cfg, lora_rank)
        if None in (params, heads, hidden, layers, vocab, dim, tied) or arithmetic is None:
            raise ProfilingError(f"{label}: its config lacks facts the estimate needs (parameters, heads, vocabulary)")
        return cls(
            params=params,
            body=arithmetic.body,
            d_q=arithmetic.d_q,
            layers=layers,
            kv_per_token=facts.kv_cache_bytes_per_token(cfg, bytes_per_value),
            head_flops=2 * vocab * hidden,
            weights_bytes=bytes_per_value * params,
            arithmetic=arithmetic,
        )


def _inference_fits(shape: _ModelShape, spec: Accelerator) -> dict[str, Fit]:
    """Prefill, a decode step and scoring: FLOPs at a share of peak, weights and KV cache
    read at a share of the bandwidth."""
    prefill_rate = spec.peak_flops * PREFILL_UTILISATION
    bandwidth = spec.bandwidth * BANDWIDTH_UTILISATION
    body, d_q, layers, head_flops = shape.body, shape.d_q, shape.layers, shape.head_flops
    prefill = Fit(
        ("1", "B", "B*P", "B*P^2"),
        (PREFILL_OVERHEAD_S, head_flops / prefill_rate, 2 * body / prefill_rate, 2 * layers * d_q / prefill_rate),
    )
    decode = Fit(
        ("1", "B", "B*C"),
        (
            DECODE_STEP_OVERHEAD_S + shape.weights_bytes / bandwidth,
            (2 * body + head_flops) / prefill_rate,
            shape.kv_per_token / bandwidth + 4 * layers * d_q / prefill_rate,
        ),
    )
    score = Fit(
        ("1", "B*L", "B*L^2"),
        (PREFILL_OVERHEAD_S, (2 * body + head_flops) / prefill_rate, 2 * layers * d_q / prefill_rate),
    )
    return {"prefill_s": prefill, "decode_step_s": decode, "score_s": score}


def _generation_batch(
    shape: _ModelShape, accelerator: str, gpu_memory_gb: float | None, vllm_memory_share: float, plan_tokens: int
) -> tuple[int, str]:
    """Sequences per generation and scoring batch, and the sentence that says why."""
    batch = GENERATION_BATCH_CAP
    if accelerator != "cuda" or not gpu_memory_gb:
        return batch, f"generation and scoring in batches of {batch} sequences"
    room = vllm_memory_share * gpu_memory_gb * 1e9 - shape.weights_bytes - CUDA_CONTEXT_BYTES
    fitting = int(room // (shape.kv_per_token * plan_tokens)) if room > 0 else 0
    batch = max(1, min(GENERATION_BATCH_CAP, fitting))
    return batch, (
        f"generation and scoring in batches of {batch} sequences: the KV cache of {plan_tokens}-token "
        f"sequences that fits vLLM's {vllm_memory_share:g} share of {gpu_memory_gb:g} GB after the weights "
        f"and 1 GiB, capped at {GENERATION_BATCH_CAP}"
    )


def train_step_note(
    spec: Accelerator,
    accelerator: str,
    layers: int,
    lora_rank: int,
    fit: StepCostFit | None,
    own_device: bool,
    seconds_per_flop: float,
) -> str:
    share = 1.0 / (seconds_per_flop * spec.peak_flops)
    if fit is not None and own_device and fit.seconds_per_flop:
        rate = f"at {share:.1%} of peak (fitted on {fit.device})"
    else:
        rate = (
            f"at {TRAIN_UTILISATION:.0%} of peak, assumed (the 2024 report, 160 steps x 100 tasks of Qwen2.5-0.5B in "
            "~3 h 55 on 2x T4, 1.76 s per step, matches this formula at ~5% for 3k-token prompts; their prompt "
            "lengths are not reported)"
        )
    return (
        f"TTFT step FLOPs = {FLOP_FORMULA} (LoRA r={lora_rank}: no weight gradients for the frozen base, no gradient "
        f"checkpointing; A = {ANSWER_TOKENS_TRAINED} answer tokens), {rate}; a packed step of k sequences of P tokens "
        "is timed as one sequence of k·P tokens (sdpa computes every score of a packed row under transformers' "
        "block-diagonal mask)"
    )


def train_overhead_note(spec: Accelerator, layers: int, fit: StepCostFit | None, own_device: bool) -> str:
    if fit is None:
        return (
            f"TTFT fixed overhead {TRAIN_STEP_OVERHEAD_S:g} s per step, assumed: no measured fit applies "
            "(`arcsub profile fit PROFILE.json... --record` records one)"
        )
    models = ", ".join(f"{name} ({n} layers)" for name, n in sorted(fit.models.items()))
    text = (
        f"TTFT fixed overhead {fit.overhead_s(layers) * 1e3:.0f} ms per step = {fit.step_s * 1e3:.3g} ms + "
        f"{fit.layer_s * 1e3:.3g} ms × {layers} layers, fitted on {fit.device} ({fit.date[:10]}, {fit.points} steps "
        f"of {models}; rms error {fit.rms_rel_error:.0%})"
    )
    if not own_device and fit.is_cpu:
        text += f"; carried to this {spec.name}: an assumption (another CPU's dispatch and Python costs)"
    elif not own_device:
        text += (
            f"; carried to the {spec.name}: an assumption, as the overhead is kernel launches and Python, bound by "
            "the host CPU rather than the card's arithmetic (a slower host makes it larger)"
        )
    return text
