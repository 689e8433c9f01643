"""``infer``: steps 1 and 2 over a set of tasks, resumable, results in a RunStore.

Tasks go to the engine ``inference.tasks_per_call`` at a time (all prompts of those
tasks in one call); each task's result file is written as soon as its call returns,
so a crash loses at most one call's work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..prompts import PromptBuilder
from ..tasks import Task
from .airv import sample
from .backend import Backend
from .scoring import score_candidates
from .store import RunStore, step_settings

log = logging.getLogger(__name__)


@dataclass
class InferenceReport:
    sampled: list[str] = field(default_factory=list)  # task ids run through step 1 now
    scored: list[str] = field(default_factory=list)  # ... and step 2
    reused: list[str] = field(default_factory=list)  # tasks whose results were on disk
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step

    def summary(self) -> str:
        times = ", ".join(f"{step} {s:.1f}s" for step, s in self.seconds.items())
        return f"sampled {len(self.sampled)} task(s), scored {len(self.scored)}, reused {len(self.reused)}" + (
            f" ({times})" if times else ""
        )


def find_adapters(adapters_dir: str | Path | None, task_ids: Sequence[str]) -> dict[str, str]:
    """Adapter folder per task: ``DIR/<task_id>/``, else ``DIR/shared/``, else ``DIR``
    itself when it is one adapter; tasks without one run on the base model."""
    if adapters_dir is None:
        return {}
    root = Path(adapters_dir)
    found = {}
    for task_id in task_ids:
        for candidate in (root / task_id, root / "shared", root):
            if (candidate / "adapter_config.json").is_file():
                found[task_id] = str(candidate)
                break
    return found


def make_backend(model_path: str | Path, config: Config, adapters: Sequence[str], *, progress: bool = True) -> Backend:
    if config.inference.backend == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model_path, config.inference, adapters, progress=progress)
    from .hf_backend import TransformersBackend

    return TransformersBackend(model_path, config.inference, adapters)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def infer(
    tasks: Sequence[Task],
    model_path: str | Path,
    tokenizer,
    config: Config,
    out_dir: str | Path,
    *,
    adapters_dir: str | Path | None = None,
    backend: Backend | None = None,
    data_label: str = "",
    overwrite: bool = False,
    progress: bool = True,
) -> InferenceReport:
    """Run step 1 (and step 2 when ``inference.scoring``) for every task not already
    done in ``out_dir``. A backend may be passed in to share one engine across calls;
    otherwise one is started (only if there is work) and closed at the end."""
    from .vllm_backend import model_window

    store = RunStore(out_dir)
    settings = step_settings(config, str(model_path), None if adapters_dir is None else str(adapters_dir))
    store.start(data_label, settings, overwrite=overwrite)
    adapters = find_adapters(adapters_dir, [t.id for t in tasks])
    todo_sample = [t for t in tasks if not store.has("sample", t.id)]
    todo_score = [t for t in tasks if config.inference.scoring and not store.has("score", t.id)]
    busy = {t.id for t in todo_sample} | {t.id for t in todo_score}
    report = InferenceReport(reused=[t.id for t in tasks if t.id not in busy])
    if not todo_sample and not todo_score:
        return report

    window = min(config.inference.max_model_len or model_window(model_path), config.prompt.max_seq_len)
    builder = PromptBuilder(config.prompt, tokenizer)
    own_backend = backend is None
    backend = backend or make_backend(model_path, config, sorted(set(adapters.values())), progress=progress)
    per_call = config.inference.tasks_per_call
    try:
        start = time.time()
        for chunk in _chunks(todo_sample, per_call):
            for task_id, predictions in sample(chunk, backend, builder, config, adapters, window).items():
                store.save_sample(task_id, predictions)
                report.sampled.append(task_id)
        report.seconds["sample"] = time.time() - start
        start = time.time()
        for chunk in _chunks(todo_score, per_call):
            predictions = {t.id: store.load_sample(t.id) for t in chunk}
            for task_id, ranked in score_candidates(
                chunk, predictions, backend, builder, config, adapters, window
            ).items():
                store.save_scores(task_id, ranked)
                report.scored.append(task_id)
        if todo_score:
            report.seconds["score"] = time.time() - start
    finally:
        if own_backend:
            backend.close()
    return report
