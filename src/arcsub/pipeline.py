"""The whole path on one machine: fallback submission, test-time fine-tuning per task,
multi-step inference, selection, ``submission.json`` and its score.

This is what ``arcsub run`` does; the Kaggle kernel runs the same stages under a
time budget. Every stage writes its results to disk as it goes (adapters per task,
predictions per task), so running the command again resumes rather than repeats.

    OUT/submission.json   always valid: written first from rule-based predictions,
                          then replaced (atomically) by the model's attempts
    OUT/adapters/<task>/  LoRA adapters from test-time fine-tuning
    OUT/predictions/      inference results (see arcsub.inference.store)
    OUT/config.toml       the settings used
    OUT/report.json       timings, training and inference summaries, the score
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, config_to_toml, save_config
from .errors import ArcsubError
from .finetune import STOP_SKIPPED, load_for_training, train_tasks
from .hardware import free_accelerator_memory
from .inference import RunStore, infer, write_selected_submission
from .io import write_json_atomic
from .models import load_tokenizer
from .submission import SubmissionScore, score_submission
from .tasks import Task

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    out_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    trained: dict[str, dict] = field(default_factory=dict)  # task id -> TrainResult as dict
    inference: str = ""
    score: SubmissionScore | None = None

    def summary(self) -> str:
        lines = ["stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items())]
        if self.trained:
            steps = [r["steps"] for r in self.trained.values()]
            lines.append(f"test-time fine-tuning: {len(steps)} task(s), {sum(steps)} steps in all")
        if self.inference:
            lines.append(f"inference: {self.inference}")
        lines.append(f"wrote {self.out_dir / 'submission.json'}")
        if self.score is not None:
            s = self.score
            lines.append(f"score {s.score:.4f} ({s.solved}/{s.total} test outputs solved)")
        return "\n".join(lines)


# Settings that do not change what training produces (so a resume may differ in them).
NOT_AFFECTING_ADAPTERS = {"log_every", "snapshot_every", "checkpoint_every", "keep_checkpoints"}


def check_resumable(out: Path, config: Config, model_path: str | Path) -> None:
    """Refuse to resume into ``out`` when its adapters were trained differently.

    Adapters on disk are reused as they are, so a rerun with other training settings
    would silently keep the old ones. (Inference results carry their own settings
    check in the result store.)"""
    saved = out / "config.toml"
    if not (out / "adapters").is_dir() or not saved.is_file():
        return
    report = out / "report.json"
    if report.is_file():
        before_model = json.loads(report.read_text()).get("model")
        if before_model not in (None, str(model_path)):
            raise ArcsubError(
                f"{out}: holds adapters trained on {before_model}, not {model_path}; use another `out` or remove it"
            )
    before, now = tomllib.loads(saved.read_text()), tomllib.loads(config_to_toml(config))
    for section in ("prompt", "augment", "finetune"):
        old, new = before.get(section, {}), now.get(section, {})
        keys = (old.keys() | new.keys()) - NOT_AFFECTING_ADAPTERS
        changed = sorted(k for k in keys if old.get(k) != new.get(k))
        if changed:
            key = changed[0]
            raise ArcsubError(
                f"{out}: its adapters were trained with {section}.{key} = {old.get(key)!r}, now {new.get(key)!r}; "
                f"use another `out`, or remove {out / 'adapters'} to train again"
            )


def run_pipeline(
    tasks: Sequence[Task],
    model_path: str | Path,
    config: Config,
    out_dir: str | Path,
    *,
    data_label: str = "",
    progress: bool = True,
) -> PipelineResult:
    """The stages above into ``out_dir``; ``progress`` shows one bar per stage.
    ``finetune.steps = 0`` leaves test-time fine-tuning out."""
    out = Path(out_dir)
    check_resumable(out, config, model_path)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.toml")
    result = PipelineResult(out)
    store = RunStore(out / "predictions")

    # 1. A complete submission before anything heavy can fail.
    start = time.time()
    write_selected_submission(tasks, store, out / "submission.json", config.inference.selection)
    result.seconds["fallback"] = time.time() - start

    # 2. Test-time fine-tuning: one adapter per task (or one shared), resumable.
    adapters_dir = None
    if config.finetune.steps > 0:
        start = time.time()
        log.info("test-time fine-tuning: %d task(s), %d steps each", len(tasks), config.finetune.steps)
        model, tokenizer = load_for_training(model_path, config)
        trained = train_tasks(model, tokenizer, tasks, config, out / "adapters", progress=progress)
        result.trained = {task_id: r.to_dict() for task_id, r in trained.items()}
        del model
        free_accelerator_memory()  # the engine starts next, on the same GPU
        if any(r.stop_reason != STOP_SKIPPED for r in trained.values()):  # else there is no adapter to serve
            adapters_dir = out / "adapters"
        result.seconds["finetune"] = time.time() - start
    else:
        tokenizer = load_tokenizer(model_path)

    # 3. Inference: sample under augmentations, then score candidates.
    start = time.time()
    report = infer(
        tasks,
        model_path,
        tokenizer,
        config,
        out / "predictions",
        adapters_dir=adapters_dir,
        data_label=data_label,
        progress=progress,
    )
    result.inference = report.summary()
    result.seconds["inference"] = time.time() - start

    # 4. Selection over what is on disk, then the score when solutions are known.
    _, submission = write_selected_submission(tasks, store, out / "submission.json", config.inference.selection)
    if all(t.has_solutions for t in tasks):
        result.score = score_submission(submission, tasks)
    write_json_atomic(
        out / "report.json",
        {
            "data": data_label,
            "model": str(model_path),
            "seconds": result.seconds,
            "trained": result.trained,
            "inference": result.inference,
            "score": None if result.score is None else result.score.__dict__,
        },
        indent=1,
    )
    return result
