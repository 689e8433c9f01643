"""``infer``: steps 1 and 2 over a set of tasks, resumable, results in a RunStore.

Tasks go to the engine ``inference.tasks_per_call`` at a time (all prompts of those
tasks in one call); each task's result file is written as soon as its call returns,
so a crash loses at most one call's work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import ArcsubError
from ..models import model_window
from ..prompts import PromptBuilder
from ..tasks import Task
from .airv import sample
from .backend import Backend
from .deadline import DeadlineBackend, DeadlineReached
from .hf_backend import TransformersBackend
from .scoring import score_candidates
from .store import RunStore, step_settings
from .vllm_backend import VLLMBackend

log = logging.getLogger(__name__)


@dataclass
class InferenceReport:
    sampled: list[str] = field(default_factory=list)  # task ids run through step 1 now
    scored: list[str] = field(default_factory=list)  # ... and step 2
    reused: list[str] = field(default_factory=list)  # tasks whose results were on disk
    without_adapter: list[str] = field(default_factory=list)  # trainable tasks served by the base model
    cut: list[str] = field(default_factory=list)  # tasks whose step 1 or 2 the deadline left out
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step
    predictions: dict[str, int] = field(default_factory=dict)  # step-1 predictions stored per task
    # With a deadline: engine requests finished and their seconds, {"sample": (prompts, s), "score": (answers, s)}
    work: dict[str, tuple[int, float]] = field(default_factory=dict)

    def summary(self) -> str:
        times = ", ".join(f"{step} {s:.1f}s" for step, s in self.seconds.items())
        text = f"sampled {len(self.sampled)} task(s), scored {len(self.scored)}, reused {len(self.reused)}"
        if self.without_adapter:
            text += f", {len(self.without_adapter)} without an adapter"
        if self.cut:
            text += f", {len(self.cut)} cut by the deadline"
        return text + (f" ({times})" if times else "")


class AdaptersNotFoundError(ArcsubError):
    pass


def find_adapters(adapters_dir: str | Path | None, tasks: Sequence[Task]) -> tuple[dict[str, str], list[str]]:
    """The adapter folder of each task: ``DIR/<task_id>/``, else ``DIR/shared/``, else
    ``DIR`` itself when it is one adapter. Returns that map and the tasks that have
    train pairs to learn from (at least 2: leave-one-out) but no adapter: they run on
    the base model. A missing folder, or one holding no adapter at all, is an error:
    a typo must not cost a run its fine-tuning silently."""
    if adapters_dir is None:
        return {}, []
    root = Path(adapters_dir)
    if not root.is_dir():
        raise AdaptersNotFoundError(
            f"{root}: adapters folder not found; give the folder that `arcsub finetune --per-task --out DIR` "
            "wrote, or leave out --adapters to run the base model"
        )
    found = {}
    for task in tasks:
        for folder in (root / task.id, root / "shared", root):
            if (folder / "adapter_config.json").is_file():
                found[task.id] = str(folder)
                break
    if tasks and not found:
        raise AdaptersNotFoundError(
            f"{root}: holds no adapter (no adapter_config.json in it, in shared/ or in a folder per task id); "
            "give the folder that `arcsub finetune --per-task --out DIR` wrote"
        )
    missing = [t.id for t in tasks if t.id not in found and len(t.train) >= 2]
    return found, missing


def make_backend(
    model_path: str | Path,
    config: Config,
    adapters: Sequence[str],
    *,
    lora_rank: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Backend:
    """The configured backend. ``lora_rank`` lets vLLM serve adapters declared later
    (``add_adapter``); ``device`` places the transformers backend."""
    if config.inference.backend == "vllm":
        return VLLMBackend(model_path, config.inference, adapters, lora_rank=lora_rank, progress=progress)
    return TransformersBackend(model_path, config.inference, adapters, device=device, progress=progress)


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
    deadline: float | None = None,
    expected_s: dict[str, float] | None = None,
    progress: bool = True,
) -> InferenceReport:
    """Run step 1 (and step 2 when ``inference.scoring``) for every task not already
    done in ``out_dir``. A backend may be passed in to share one engine across calls;
    otherwise one is started (only if there is work) and closed at the end. ``progress``
    shows one bar per step (when this call starts the backend).

    ``deadline`` (a ``time.time()`` value): engine calls go in pieces, and no piece
    starts that is expected to end after it (see ``deadline.DeadlineBackend``). A task
    whose sampling was cut keeps the predictions it got; one whose scoring was cut keeps
    step 1's votes. Such tasks are listed in ``report.cut``. ``expected_s``: seconds per
    request measured before (``{"generate": s, "score": s}``) for the first piece. With a
    deadline, step 1's predictions are saved after every piece: a worker killed past the
    deadline leaves its votes on disk."""
    adapters, without_adapter = find_adapters(adapters_dir, tasks)
    if without_adapter:
        _warn_without_adapter(adapters_dir, without_adapter)
    store = RunStore(out_dir)
    settings = step_settings(config, str(model_path), None if adapters_dir is None else str(adapters_dir))
    store.start(data_label, settings, overwrite=overwrite)
    todo_sample = [t for t in tasks if not store.has("sample", t.id)]
    todo_score = [t for t in tasks if config.inference.scoring and not store.has("score", t.id)]
    busy = {t.id for t in todo_sample} | {t.id for t in todo_score}
    report = InferenceReport(reused=[t.id for t in tasks if t.id not in busy], without_adapter=without_adapter)
    if not todo_sample and not todo_score:
        return report

    window = min(config.inference.max_model_len or model_window(model_path), config.prompt.max_seq_len)
    own_backend = backend is None
    if own_backend:
        log.info(
            "inference: starting the %s backend (%d task(s) to sample, %d to score)",
            config.inference.backend,
            len(todo_sample),
            len(todo_score),
        )
    backend = backend or make_backend(model_path, config, sorted(set(adapters.values())), progress=progress)
    engine = backend if deadline is None else DeadlineBackend(backend, deadline, expected=expected_s)
    steps = _Steps(engine, PromptBuilder(config.prompt, tokenizer), config, adapters, window, store, report)
    try:
        start = time.time()
        steps.sample(todo_sample, save_progress=deadline is not None)
        report.seconds["sample"] = time.time() - start
        start = time.time()
        steps.score(todo_score)
        if todo_score:
            report.seconds["score"] = time.time() - start
    finally:
        if isinstance(engine, DeadlineBackend):
            engine.detach()
            report.work = {"sample": tuple(engine.work["generate"]), "score": tuple(engine.work["score"])}
        if own_backend:
            backend.close()
    return report


def _warn_without_adapter(adapters_dir, without_adapter: list[str]) -> None:
    shown = ", ".join(without_adapter[:10]) + (" ..." if len(without_adapter) > 10 else "")
    log.warning(
        "%s: no adapter for %d task(s) with train pairs; the base model serves them: %s",
        adapters_dir,
        len(without_adapter),
        shown,
    )


@dataclass
class _Steps:
    """Steps 1 and 2 over the tasks to do, ``inference.tasks_per_call`` tasks per engine
    call, each task's results stored as its call returns and noted in ``report``."""

    engine: Backend
    builder: PromptBuilder
    config: Config
    adapters: dict[str, str]
    window: int
    store: RunStore
    report: InferenceReport

    def sample(self, tasks: list[Task], *, save_progress: bool) -> None:
        """Step 1. ``save_progress`` (with a deadline): predictions are saved after every
        piece of a call, so a worker killed past the deadline leaves its votes on disk."""
        store, report = self.store, self.report

        def save_so_far(results) -> None:
            for task_id, predictions in results.items():
                if any(predictions):
                    store.save_sample(task_id, predictions)

        for chunk in _chunks(tasks, self.config.inference.tasks_per_call):
            results = sample(
                chunk, self.engine, self.builder, self.config, self.adapters, self.window,
                on_progress=save_so_far if save_progress else None,
            )  # fmt: skip
            if getattr(self.engine, "cut", False):
                self.note_cut(chunk)
                if not any(p for per_test in results.values() for p in per_test):
                    continue  # nothing sampled: these tasks keep their fallback
            for task_id, predictions in results.items():
                store.save_sample(task_id, predictions)
                report.sampled.append(task_id)
                report.predictions[task_id] = sum(len(per_test) for per_test in predictions)

    def score(self, tasks: list[Task]) -> None:
        """Step 2, for the tasks whose step 1 is stored and was not cut."""
        store, report = self.store, self.report
        for chunk in _chunks(tasks, self.config.inference.tasks_per_call):
            chunk = [t for t in chunk if store.has("sample", t.id) and t.id not in report.cut]
            if not chunk:
                continue
            predictions = {t.id: store.load_sample(t.id) for t in chunk}
            try:
                ranked_by_task = score_candidates(
                    chunk, predictions, self.engine, self.builder, self.config, self.adapters, self.window
                )
            except DeadlineReached:
                self.note_cut(chunk)
                continue
            for task_id, ranked in ranked_by_task.items():
                store.save_scores(task_id, ranked)
                report.scored.append(task_id)

    def note_cut(self, chunk: list[Task]) -> None:
        self.report.cut += [t.id for t in chunk if t.id not in self.report.cut]
