"""Config-faithful random-weight replicas of the candidates, built offline.

No candidate's weights can be downloaded here, yet every preparation step must be
tested on each architecture family. A replica keeps what the code paths depend on:
the architecture class, the attention and key/value head counts (tensor
parallelism), the RoPE settings and window, the sliding window, tied or untied
embeddings, and the special tokens and chat template of the tokenizer. It reduces
what only costs time: depth (2 layers by default) and width (16 dimensions a head,
so ``hidden = heads × 16``).

Tokenizers: the SmolLM family shares the embedded default's tokenizer, so its
replicas use the real one. The others get a small BPE trained here on generated
text, in the style of the original: LLaMA-2-style (SentencePiece-like ``▁`` spaces,
byte fallback, single digits, ``<s>`` prepended) for AMD-Llama and TinyMistral,
Qwen2-style (byte-level BPE, single digits, ChatML markers, chat template) for Qwen.
Token strings and roles match the original; ids and vocabulary size do not.

OpenELM cannot be replicated: its architecture exists only as remote code
(``modeling_openelm.py`` on the Hub), which transformers does not ship and this
machine cannot download. NanoLM-365M-Base is Qwen2 (covered by the Qwen2.5 replica)
with unchecked config facts, so it is not built either.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from ..console import say
from ..errors import ModelPreparationError
from ..io import atomic_dir
from .chat_template import CHATML
from .default import default_model_dir
from .loading import load_tokenizer
from .registry import CandidateModel, get_candidate
from .synthetic_text import corpus

REPLICA_FILE = "arcsub-replica.json"
_TOKENIZER_STYLE = {
    "AMD-Llama-135m": "llama2",
    "TinyMistral-248M": "llama2",
    "SmolLM-135M-Instruct": "smollm",
    "SmolLM2-135M-Instruct": "smollm",
    "SmolLM2-360M-Instruct": "smollm",
    "Qwen2.5-0.5B-Instruct": "qwen2",
}


def replica_names() -> list[str]:
    return list(_TOKENIZER_STYLE)


def _train(tok, special: list[str], vocab_size: int, seed: int, alphabet: list[str] | None = None) -> None:
    from tokenizers import trainers

    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet or [], show_progress=False
    )
    tok.train_from_iterator(corpus(random.Random(seed), 400), trainer)


def llama_style_tokenizer(vocab_size: int = 800, seed: int = 0):
    """A small LLaMA-2-style BPE: ``▁`` for spaces (and one prepended), byte
    fallback, one token per digit, ``<s>`` prepended with add_special_tokens=True.
    No chat template and no ChatML markers, like the original."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    _train(tok, ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)], vocab_size, seed)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def qwen_style_tokenizer(vocab_size: int = 800, seed: int = 0):
    """A small Qwen2-style byte-level BPE with the ChatML markers and template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),  # one token per digit
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    _train(tok, special, vocab_size, seed, alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML.jinja
    return tokenizer


def replica_tokenizer(name: str, *, notify: Callable[[str], None] = say):
    style = _TOKENIZER_STYLE[name]
    if style == "smollm":
        return load_tokenizer(default_model_dir(notify=notify))  # the embedded model's own, converted once
    return llama_style_tokenizer() if style == "llama2" else qwen_style_tokenizer()


def _refuse(candidate: CandidateModel) -> None:
    if candidate.config.get("model_type") == "openelm":
        raise ModelPreparationError(
            f"{candidate.name}: cannot be replicated here; OpenELMForCausalLM exists only as remote code "
            "(modeling_openelm.py on the Hub), which transformers does not ship and this machine cannot download"
        )
    if candidate.name not in _TOKENIZER_STYLE:
        raise ModelPreparationError(
            f"{candidate.name}: not replicated (unchecked config facts: {', '.join(candidate.unknown) or 'none'}); "
            f"replicas exist for {', '.join(replica_names())}"
        )


def replica_config(candidate: CandidateModel, tokenizer, *, layers: int, head_width: int) -> dict:
    """The candidate's config with depth and width reduced and the tokenizer's ids."""
    cfg = {k: v for k, v in candidate.config.items() if k not in ("architectures",)}
    heads = cfg["num_attention_heads"]
    ratio = cfg["intermediate_size"] / cfg["hidden_size"]
    hidden = heads * head_width
    cfg.update(
        num_hidden_layers=layers,
        head_dim=head_width,
        hidden_size=hidden,
        intermediate_size=max(8, round(ratio * hidden / 8) * 8),
        vocab_size=len(tokenizer),
    )
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = layers
    tok = candidate.tokenizer
    for key, token in (("bos_token_id", tok.bos), ("eos_token_id", tok.eos), ("pad_token_id", tok.pad)):
        if token and token != "none":
            cfg[key] = tokenizer.convert_tokens_to_ids(token)
        else:
            cfg.pop(key, None)
    return cfg


def build_replica(
    name: str,
    dst: str | os.PathLike,
    *,
    layers: int = 2,
    head_width: int = 16,
    seed: int = 0,
    notify: Callable[[str], None] = say,
) -> Path:
    """Write a random-weight replica of candidate ``name`` to ``dst`` (a new folder)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    candidate = get_candidate(name)
    _refuse(candidate)
    dst = Path(dst)
    if dst.exists():
        raise ModelPreparationError(f"{dst}: already exists; choose a new destination folder or remove it")
    tokenizer = replica_tokenizer(candidate.name, notify=notify)
    cfg = replica_config(candidate, tokenizer, layers=layers, head_width=head_width)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    config.architectures = list(candidate.config["architectures"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if model.__class__.__name__ != candidate.architecture:
        raise RuntimeError(f"built {model.__class__.__name__}, expected {candidate.architecture}")

    with atomic_dir(dst) as tmp:
        model.save_pretrained(tmp)
        tokenizer.model_max_length = candidate.config.get("max_position_embeddings", tokenizer.model_max_length)
        tokenizer.save_pretrained(tmp)
        provenance = {"candidate": candidate.name, "repo": candidate.repo, "layers": layers, "head_width": head_width}
        (tmp / REPLICA_FILE).write_text(json.dumps(provenance, indent=1) + "\n")
    return dst
