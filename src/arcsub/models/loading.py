"""Loading tokenizers (and later models) by path or by the name ``default``."""

from __future__ import annotations

import os

from .default import resolve_model


def load_tokenizer(name_or_path: str | os.PathLike, *, progress=print):
    """A fast Hugging Face tokenizer (offsets are needed for loss masks)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        from ..errors import ModelNotFoundError

        raise ModelNotFoundError(f"{path}: the tokenizer is not a fast tokenizer (tokenizer.json); offsets need one")
    return tokenizer
