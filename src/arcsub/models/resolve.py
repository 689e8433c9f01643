"""What a model name means: ``default`` (the embedded model pre-trained on ARC),
``default-chat`` (the embedded chat model as its makers shipped it) or a local model
folder. Above both ``default.py`` (the conversion) and ``pretrained.py`` (the merge)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..console import say
from ..errors import ModelNotFoundError
from .default import CHAT_NAME, DEFAULT_NAME, default_model_dir
from .pretrained import pretrained_default_dir


def resolve_model(name_or_path: str | os.PathLike, *, notify: Callable[[str], None] = say) -> Path:
    """``"default"`` -> the embedded model pre-trained on ARC (merged on first use);
    ``"default-chat"`` -> the embedded chat model, converted; otherwise a local model folder."""
    if str(name_or_path) == DEFAULT_NAME:
        return pretrained_default_dir(notify=notify)
    if str(name_or_path) == CHAT_NAME:
        return default_model_dir(notify=notify)
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path}: not a model directory (no config.json); pass a Hugging Face model folder, 'default' "
            f"or '{CHAT_NAME}'"
        )
    return path
