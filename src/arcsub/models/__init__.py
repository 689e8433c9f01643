"""The bottom of the model side: the embedded default model (``default``), reading
model folders (config, one ``model_window``, tokenizers), the candidate registry and
``inspect``, context extension, chat templates, test replicas. It imports no engine:
the checks that run models (fp16, context window) live in ``arcsub.checks``.
Importing this package imports no torch."""

from . import config_facts
from .chat_template import TEMPLATES, add_chat_template
from .context import SCALINGS, extend_context
from .default import CHAT_NAME, DEFAULT_NAME, STAMP_FILE, cache_root, default_model_dir
from .inspection import FP16_MAX, as_json, gather, markdown_table
from .loading import load_tokenizer, model_folder, model_window, read_config
from .pretrained import ADAPTER_DIR, ADAPTER_WEIGHTS, MAX_ADAPTER_BYTES, SHIPPED_BASE_NAME, shipped_adapter
from .registry import CANDIDATES, CandidateModel, candidate_names
from .replicas import build_replica, llama_style_tokenizer, qwen_style_tokenizer
from .resolve import resolve_model
from .synthetic_text import corpus, distraction_chunk

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_WEIGHTS",
    "CANDIDATES",
    "CHAT_NAME",
    "DEFAULT_NAME",
    "FP16_MAX",
    "MAX_ADAPTER_BYTES",
    "SCALINGS",
    "SHIPPED_BASE_NAME",
    "STAMP_FILE",
    "TEMPLATES",
    "CandidateModel",
    "add_chat_template",
    "as_json",
    "build_replica",
    "cache_root",
    "candidate_names",
    "config_facts",
    "corpus",
    "default_model_dir",
    "distraction_chunk",
    "extend_context",
    "gather",
    "llama_style_tokenizer",
    "load_tokenizer",
    "markdown_table",
    "model_folder",
    "model_window",
    "qwen_style_tokenizer",
    "read_config",
    "resolve_model",
    "shipped_adapter",
]
