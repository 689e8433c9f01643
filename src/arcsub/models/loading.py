"""Reading a model folder: its ``config.json``, its context window, its tokenizer.

``model_window`` is the one answer to "how many tokens may a sequence have?" for
training (the budget check), inference (vLLM's ``max_model_len``) and the model
checks: the declared window, times the factor of linear or dynamic RoPE scaling
(which keep ``max_position_embeddings`` at the trained window; vLLM scales it the
same way).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..console import say
from ..errors import ModelNotFoundError
from ..io import read_json
from . import config_facts as facts
from .resolve import resolve_model


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A model folder's ``config.json`` as a dict, with one-line errors."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path}: no config.json; pass a Hugging Face model folder")
    return read_json(path / "config.json", ModelNotFoundError)


def model_window(model: str | os.PathLike | Mapping[str, Any]) -> int:
    """The tokens a sequence may have: a model folder's, or a config dict's (such as
    ``model.config.to_dict()``). Refuses a config that declares no window."""
    config = model if isinstance(model, Mapping) else read_config(model)
    window = facts.usable_window(config)
    if not window:
        where = "the model's config" if isinstance(model, Mapping) else f"{model}/config.json"
        raise ModelNotFoundError(
            f"{where}: declares no context window (max_position_embeddings); add it to config.json"
        )
    return window


def load_tokenizer(name_or_path: str | os.PathLike, *, notify: Callable[[str], None] = say):
    """A fast Hugging Face tokenizer (offsets are needed for loss masks)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path, notify=notify)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"{path}: the tokenizer is not a fast tokenizer (tokenizer.json); offsets need one")
    return tokenizer
