"""Reading a model folder: its ``config.json``, its context window, its tokenizer.

``model_window`` is the one answer to "how many tokens may a sequence have?" for
training (the budget check), inference (vLLM's ``max_model_len``) and the model
checks: the declared window, times the factor of linear or dynamic RoPE scaling
(which keep ``max_position_embeddings`` at the trained window; vLLM scales it the
same way).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from ..io import read_json
from . import config_facts as facts
from .default import CHAT_NAME, DEFAULT_NAME


def model_folder(path: str | os.PathLike) -> Path:
    """``path`` as a model folder (``config.json`` in it), checked, nothing resolved or
    converted: names such as ``default`` are resolved once, at the command's edge
    (``models.resolve_model``)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        hint = (
            f"; resolve the name first (arcsub.models.resolve_model({str(path)!r}))"
            if str(path) in (DEFAULT_NAME, CHAT_NAME)
            else ""
        )
        raise ModelNotFoundError(
            f"{path}: not a model directory (no config.json); pass a Hugging Face model folder{hint}"
        )
    return path


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


def load_tokenizer(model: str | os.PathLike):
    """A model folder's fast Hugging Face tokenizer (offsets are needed for loss masks)."""
    from transformers import AutoTokenizer

    path = model_folder(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"{path}: the tokenizer is not a fast tokenizer (tokenizer.json); offsets need one")
    return tokenizer
