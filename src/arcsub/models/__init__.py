"""The bottom of the model side: the embedded default model (``default``), reading
model folders (config, one ``model_window``, tokenizers), the candidate registry and
``inspect``, context extension, chat templates, test replicas. It imports no engine:
the checks that run models (fp16, context window) live in ``arcsub.checks``.
Importing this package imports no torch."""

from .default import CHAT_NAME, DEFAULT_NAME, default_model_dir
from .resolve import resolve_model

__all__ = ["CHAT_NAME", "DEFAULT_NAME", "default_model_dir", "resolve_model"]
