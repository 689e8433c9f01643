"""Model preparation: the embedded default model and (later) inspection, context
extension, chat templates, the fp16 check and the context-window experiment."""

from .default import DEFAULT_NAME, default_model_dir, resolve_model

__all__ = ["DEFAULT_NAME", "default_model_dir", "resolve_model"]
