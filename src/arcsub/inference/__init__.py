"""Inference: backends (vLLM, transformers) behind one small interface, AIRV sampling
(augment, infer, reverse, vote), candidate scoring under augmentations, the per-task
result files that make a run resumable, and the final attempts chosen from them.

The public entry
  ``infer(tasks, model_path, tokenizer, config, out_dir, adapters_dir=...)``  steps 1
        and 2 for the tasks not done yet in ``out_dir`` (``run.py``); the adapters
        folder is checked first (``find_adapters``)
  ``make_backend(model_path, config, adapters)``  a vLLM or transformers backend, to
        share one engine across ``infer`` calls
  ``RunStore(out_dir)``  the per-task result files (``store.py``)
  ``write_selected_submission(tasks, store, path)``  the 2 attempts per test input
        from what is on disk, written as a valid ``submission.json`` (``attempts.py``)

Importing this package imports neither torch nor vLLM; the backends do, when built.
"""

from .airv import sample_jobs
from .attempts import select_attempts, write_selected_submission
from .backend import GenerationRequest, ScoreRequest, adapter_rank
from .run import AdaptersNotFoundError, InferenceReport, find_adapters, infer, make_backend
from .scoring import score_jobs
from .store import RunMismatchError, RunStore
from .vllm_backend import engine_kwargs

__all__ = [
    "AdaptersNotFoundError",
    "GenerationRequest",
    "InferenceReport",
    "RunMismatchError",
    "RunStore",
    "ScoreRequest",
    "adapter_rank",
    "engine_kwargs",
    "find_adapters",
    "infer",
    "make_backend",
    "sample_jobs",
    "score_jobs",
    "select_attempts",
    "write_selected_submission",
]
