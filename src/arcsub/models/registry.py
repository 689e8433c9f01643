"""The candidate models named in the research this product follows, by their
published facts: no weights can be downloaded here, so the table is built from the
``config.json`` values each model publishes (copied below, key for key) and a few
tokenizer facts. Every derived column (parameters, KV cache, tensor parallelism, T4
fit) is computed from these values by :mod:`arcsub.models.config_facts`.

A key that is missing from a config below is unknown, and the table says so. Only
NanoLM-365M-Base has gaps: its card says it is Qwen2-0.5B with the tokenizer replaced
by an 8K one, so its backbone shape is Qwen2-0.5B's, while its vocabulary size, window
and RoPE theta were not checked.

``vllm`` records whether vLLM 0.32 serves the architecture (its model registry lists
the class; checked by a test against the installed vLLM). OpenELM is not in it: the
model runs only through its own remote code (``trust_remote_code``), which vLLM does
not load, so it cannot be the inference model here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelNotFoundError


@dataclass(frozen=True)
class TokenizerFacts:
    description: str
    chat_template: bool | None  # None: unknown
    bos: str | None = None
    eos: str | None = None
    pad: str | None = None  # "none": the tokenizer has no pad token
    special_tokens: tuple[str, ...] = ()  # strings the replicas register


@dataclass(frozen=True)
class CandidateModel:
    name: str
    repo: str  # Hugging Face repository
    config: dict[str, Any]  # published config.json values (missing key = unknown)
    tokenizer: TokenizerFacts
    published_params: str  # as the model card or name states it
    vllm: bool  # vLLM 0.32 serves this architecture without remote code
    notes: str = ""
    unknown: tuple[str, ...] = field(default=())  # config keys known to be unverified

    @property
    def architecture(self) -> str:
        return self.config["architectures"][0]


_LLAMA2_TOKENIZER = TokenizerFacts(
    "LLaMA-2 SentencePiece BPE, 32000 tokens",
    chat_template=False,
    bos="<s>",
    eos="</s>",
    pad="none",
    special_tokens=("<unk>", "<s>", "</s>"),
)
_SMOL_TOKENIZER = TokenizerFacts(
    "SmolLM BPE, 49152 tokens, ChatML markers built in",
    chat_template=True,
    bos="<|im_start|>",
    eos="<|im_end|>",
    pad="<|im_end|>",
    special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
)

_SMOL_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
}

CANDIDATES: tuple[CandidateModel, ...] = (
    CandidateModel(
        name="AMD-Llama-135m",
        repo="amd/AMD-Llama-135m",
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 768,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "num_key_value_heads": 12,
            "head_dim": 64,
            "max_position_embeddings": 2048,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "vocab_size": 32000,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "rms_norm_eps": 1e-05,
            "hidden_act": "silu",
        },
        tokenizer=_LLAMA2_TOKENIZER,
        published_params="135M",
        vllm=True,
        notes="base model: no chat template; 2k window",
    ),
    CandidateModel(
        name="SmolLM-135M-Instruct",
        repo="HuggingFaceTB/SmolLM-135M-Instruct",
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            **_SMOL_135M,
            "max_position_embeddings": 2048,
            "rope_theta": 10000.0,
            "rope_scaling": None,
        },
        tokenizer=_SMOL_TOKENIZER,
        published_params="135M",
        vllm=True,
        notes="2k window, theta 1e4: the research raised theta to 1e5 for 8k prompts",
    ),
    CandidateModel(
        name="TinyMistral-248M",
        repo="Locutusque/TinyMistral-248M",
        config={
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 12,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 32768,
            "rope_theta": 10000.0,
            "sliding_window": 32,
            "vocab_size": 32005,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "rms_norm_eps": 1e-06,
            "hidden_act": "silu",
        },
        tokenizer=TokenizerFacts(
            "Mistral SentencePiece BPE extended to 32005 tokens",
            chat_template=None,
            bos="<s>",
            eos="</s>",
            pad=None,
            special_tokens=("<unk>", "<s>", "</s>"),
        ),
        published_params="248M",
        vllm=True,
        notes="sliding_window 32: each token attends to the last 32 only, whatever the window says",
    ),
    CandidateModel(
        name="OpenELM-270M",
        repo="apple/OpenELM-270M",
        config={
            "architectures": ["OpenELMForCausalLM"],
            "model_type": "openelm",
            "model_dim": 1280,
            "num_transformer_layers": 16,
            "head_dim": 64,
            "num_query_heads": [12, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20],
            "num_kv_heads": [3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5],
            "num_gqa_groups": 4,
            "ffn_multipliers": [
                0.5,
                0.73,
                0.97,
                1.2,
                1.43,
                1.67,
                1.9,
                2.13,
                2.37,
                2.6,
                2.83,
                3.07,
                3.3,
                3.53,
                3.77,
                4.0,
            ],  # fmt: skip
            "ffn_dim_divisor": 256,
            "ffn_with_glu": True,
            "normalize_qk_projections": True,
            "max_context_length": 2048,
            "rope_freq_constant": 10000,
            "rope_max_length": 4096,
            "vocab_size": 32000,
            "share_input_output_layers": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        tokenizer=TokenizerFacts(
            "none shipped: the card points to the (gated) LLaMA-2 tokenizer",
            chat_template=False,
            bos="<s>",
            eos="</s>",
            pad="none",
            special_tokens=("<unk>", "<s>", "</s>"),
        ),
        published_params="270M",
        vllm=False,
        notes="remote code only (OpenELMForCausalLM is not in transformers or vLLM); per-layer head counts",
    ),
    CandidateModel(
        name="NanoLM-365M-Base",
        repo="Mxode/NanoLM-365M-Base",
        config={
            # Qwen2-0.5B's backbone; the card: "Based on Qwen2-0.5B, the tokenizer has been
            # replaced with BilingualTokenizer-8K ... total parameters reduced to 365M".
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06,
            "hidden_act": "silu",
        },
        tokenizer=TokenizerFacts("BilingualTokenizer-8K (about 8K tokens; exact size not checked)", None),
        published_params="365M",
        vllm=True,
        notes="trained at 4096 tokens (card); vocab size, window, theta and tying not checked",
        unknown=("vocab_size", "max_position_embeddings", "rope_theta", "tie_word_embeddings"),
    ),
    CandidateModel(
        name="Qwen2.5-0.5B-Instruct",
        repo="Qwen/Qwen2.5-0.5B-Instruct",
        config={
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "use_sliding_window": False,
            "vocab_size": 151936,
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "rms_norm_eps": 1e-06,
            "hidden_act": "silu",
        },
        tokenizer=TokenizerFacts(
            "Qwen2 byte-level BPE, 151665 tokens (embedding padded to 151936)",
            chat_template=True,
            bos="none",
            eos="<|im_end|>",
            pad="<|endoftext|>",
            special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        ),
        published_params="0.49B",
        vllm=True,
        notes="the baseline to beat (2024 leaderboard 40 with TTFT)",
    ),
    CandidateModel(
        name="SmolLM2-135M-Instruct",
        repo="HuggingFaceTB/SmolLM2-135M-Instruct",
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            **_SMOL_135M,
            "head_dim": 64,
            "max_position_embeddings": 8192,
            "rope_theta": 100000.0,
            "rope_scaling": None,
        },
        tokenizer=_SMOL_TOKENIZER,
        published_params="135M",
        vllm=True,
        notes="the embedded default (`arcsub model default`)",
    ),
    CandidateModel(
        name="SmolLM2-360M-Instruct",
        repo="HuggingFaceTB/SmolLM2-360M-Instruct",
        config={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_hidden_layers": 32,
            "num_attention_heads": 15,
            "num_key_value_heads": 5,
            "head_dim": 64,
            "max_position_embeddings": 8192,
            "rope_theta": 100000.0,
            "rope_scaling": None,
            "vocab_size": 49152,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
            "rms_norm_eps": 1e-05,
            "hidden_act": "silu",
        },
        tokenizer=_SMOL_TOKENIZER,
        published_params="360M",
        vllm=True,
    ),
)

DEFAULT_CANDIDATE = "SmolLM2-135M-Instruct"


def candidate_names() -> list[str]:
    return [c.name for c in CANDIDATES]


def get_candidate(name: str) -> CandidateModel:
    for candidate in CANDIDATES:
        if candidate.name.lower() == name.lower():
            return candidate
    raise ModelNotFoundError(
        f"{name}: not a model folder nor a registered candidate; candidates: {', '.join(candidate_names())}"
    )


def is_candidate(name: str) -> bool:
    return any(c.name.lower() == name.lower() for c in CANDIDATES)
