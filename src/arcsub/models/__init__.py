"""Model preparation: the embedded default model (``default``), tokenizer loading,
the candidate registry and inspection, context extension, chat templates, the fp16
check and the context-window experiment. Each lives in its own module; importing
this package imports no torch."""

from .default import DEFAULT_NAME, default_model_dir, resolve_model

__all__ = ["DEFAULT_NAME", "default_model_dir", "resolve_model"]
