"""The arithmetic of one LoRA training step: the FLOP count a step cannot do without.

One formula, used by the analytic estimate (``analytic.py``), by the fit of measured
step times (``step_fit.py``) and by ``bench/ttft_throughput.py`` (the fraction of this
bound a step reaches). For a step over sequences of T₁ … T_k tokens (T = ΣTᵢ) with A
labelled tokens in all:

    FLOPs = (4·N + 6·N_lora)·T + 6·layers·d_q·ΣTᵢ² + 4·vocab·hidden·A

* ``4·N·T``: the frozen base (N parameters outside the embeddings): 2·N·T forward and
  2·N·T for the input gradients; no weight gradients, the base does not train;
* ``6·N_lora·T``: the adapter (forward, input and weight gradients), LoRA A and B on
  every linear layer of a block (q, k, v, o, gate, up, down);
* ``6·layers·d_q·ΣTᵢ²``: causal attention within each sequence (QKᵀ and AV forward,
  twice that backward, half of the square skipped by the causal mask; d_q the query
  width): packed sequences do not attend to each other, so their squares add;
* ``4·vocab·hidden·A``: the output head at the labelled positions only (forward and
  input gradient; the engine keeps no other logits).

Norms, rotary embeddings, the softmax and the optimizer are left out (a few percent).
This is the work a step must do; what a kernel does can be more (a packed row under a
block-diagonal mask computes every score of the row). Pure Python.

The peaks a step is measured against (``ACCELERATORS``, datasheet dense fp16/bf16
tensor throughput) live here too, with a rough figure for a CPU (``cpu_peak_flops``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import config_facts as facts

FLOP_FORMULA = "(4·N + 6·N_lora)·T + 6·layers·d_q·ΣTᵢ² + 4·vocab·hidden·A"
FLOP_FORMULA_NOTE = (
    f"FLOPs per step = {FLOP_FORMULA}: N parameters outside the embeddings (frozen: forward + input gradients), "
    "N_lora adapter weights (r on q,k,v,o,gate,up,down), causal attention within each sequence (d_q query width), "
    "the head at the A labelled positions only; T = ΣTᵢ tokens in the step"
)


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


def accelerator_key(device_name: str) -> str | None:
    """The ``ACCELERATORS`` key a device name (``NVIDIA H100 80GB HBM3``) belongs to."""
    for key in ACCELERATORS:
        if key.lower() in device_name.lower():
            return key
    return None


def datasheet_peak(device_name: str) -> float | None:
    key = accelerator_key(device_name)
    return ACCELERATORS[key].peak_flops if key else None


def cpu_peak_flops(cores: int, flags: set[str], mhz: float) -> tuple[float, str]:
    """A rough fp32 peak for ``cores`` cores: FMA lanes per cycle (AVX-512 with two FMA
    units: 64 FLOPs a cycle; AVX2: 32; else 8) times the clock /proc/cpuinfo reports.
    Turbo, shared hosts and one FMA unit on some parts move it by 2x either way."""
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    peak = cores * per_cycle * mhz * 1e6
    isa = "AVX-512" if per_cycle == 64 else "AVX2 FMA" if per_cycle == 32 else "no FMA"
    note = (
        f"{cores} core(s) × {per_cycle} fp32 FLOPs a cycle ({isa}) × {mhz / 1000:.2f} GHz = "
        f"{peak / 1e9:.0f} GFLOPS (rough: turbo and the host move it)"
    )
    return peak, note


@dataclass(frozen=True)
class StepArithmetic:
    """The config facts the formula needs, for one model and LoRA rank."""

    body: int  # N: parameters outside the embeddings (and the untied head)
    lora: int  # N_lora
    layers: int
    d_q: float  # query width per layer
    vocab: int
    hidden: int

    def flops(self, sequences: Sequence[int], answer_tokens: int) -> float:
        """FLOPs of one step over sequences of these lengths, ``answer_tokens`` labelled in all."""
        tokens = sum(sequences)
        return (
            (4 * self.body + 6 * self.lora) * tokens
            + 6 * self.layers * self.d_q * sum(t * t for t in sequences)
            + 4 * self.vocab * self.hidden * answer_tokens
        )

    def terms(self) -> dict[str, float]:
        """Per-token, per-squared-token (one sequence) and per-answer-token FLOPs."""
        return {
            "T": 4.0 * self.body + 6.0 * self.lora,
            "T^2": 6.0 * self.layers * self.d_q,
            "A": 4.0 * self.vocab * self.hidden,
        }


def lora_parameters(cfg: dict, rank: int) -> int:
    """The adapter's weights (``config_facts.lora_parameters``); 0 when the config cannot tell."""
    return facts.lora_parameters(cfg, rank) or 0


def step_arithmetic(cfg: dict, lora_rank: int = 32) -> StepArithmetic | None:
    """The formula's facts for a config.json dict; None when the config lacks one."""
    params, heads, hidden = facts.count_parameters(cfg), facts.layer_heads(cfg), facts.hidden_size(cfg)
    layers, dim, tied, vocab = (
        facts.num_layers(cfg),
        facts.head_dim(cfg),
        facts.tied_embeddings(cfg),
        cfg.get("vocab_size"),
    )
    if None in (params, heads, hidden, layers, dim, tied, vocab):
        return None
    body = params - vocab * hidden * (1 if tied else 2)
    d_q = sum(q for q, _ in heads) * dim / layers
    return StepArithmetic(body, lora_parameters(cfg, lora_rank), layers, d_q, vocab, hidden)
