"""Per-task result files: one file per task and step, written atomically, so a
restarted run resumes where it stopped and selection can be redone without a model.

    OUT/run.json             what produced the files (model, adapters, settings per step)
    OUT/sample/<task>.json   step 1: predictions per test input
    OUT/score/<task>.json    step 2: candidates per test input, with their scores

A step's files are reused only when its settings are the ones recorded; otherwise
the run refuses rather than mixing results from two configurations.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ArcsubError
from ..io import write_json_atomic
from ..selection import Candidate, Prediction

STEPS = ("sample", "score")
# Settings that change how fast or where a step runs, not what it computes (the two
# backends agree: the kernel's worker that falls back from vLLM to transformers goes on
# from what the first one stored).
_ENGINE_ONLY = {
    "backend", "gpu_memory_utilization", "kv_cache_gib", "enforce_eager", "enable_prefix_caching", "tasks_per_call"
}  # fmt: skip
_SCORE_ONLY = {"scoring", "score_augmentations", "max_candidates", "selection"}


class RunMismatchError(ArcsubError):
    pass


def step_settings(config: Config, model: str, adapters: str | None) -> dict[str, dict[str, Any]]:
    """What each step's results depend on."""
    inference = {k: v for k, v in dataclasses.asdict(config.inference).items() if k not in _ENGINE_ONLY}
    common = {
        "model": model,
        "adapters": adapters,
        "prompt": dataclasses.asdict(config.prompt),
        "augment": dataclasses.asdict(config.augment),
    }
    sample = {**common, "inference": {k: v for k, v in inference.items() if k not in _SCORE_ONLY}}
    score = {**common, "inference": {k: v for k, v in inference.items() if k != "selection"}}
    return {"sample": sample, "score": score}


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, step: str, task_id: str) -> Path:
        return self.root / step / f"{task_id}.json"

    def has(self, step: str, task_id: str) -> bool:
        return self.path(step, task_id).is_file()

    def read_run(self) -> dict[str, Any] | None:
        path = self.root / "run.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def start(self, data: str, settings: dict[str, dict[str, Any]], *, overwrite: bool = False) -> None:
        """Record the settings; refuse to reuse a step's files made with others."""
        previous = self.read_run()
        if previous and not overwrite:
            for step in STEPS:
                if any((self.root / step).glob("*.json")) and previous["settings"].get(step) != settings[step]:
                    raise RunMismatchError(
                        f"{self.root}: holds {step} results made with other settings; "
                        "use another output folder or pass `overwrite`"
                    )
        if overwrite:
            for step in STEPS:
                for stale in (self.root / step).glob("*.json"):
                    stale.unlink()
        write_json_atomic(self.root / "run.json", {"data": data, "settings": settings}, indent=1)

    def save_sample(self, task_id: str, predictions: list[list[Prediction]]) -> None:
        write_json_atomic(
            self.path("sample", task_id),
            {"task_id": task_id, "predictions": [[p.to_json() for p in preds] for preds in predictions]},
        )

    def load_sample(self, task_id: str) -> list[list[Prediction]]:
        path = self.path("sample", task_id)
        data = json.loads(path.read_text())
        return [[Prediction.from_json(p, f"{path}") for p in preds] for preds in data["predictions"]]

    def save_scores(self, task_id: str, candidates: list[list[Candidate]]) -> None:
        write_json_atomic(
            self.path("score", task_id),
            {"task_id": task_id, "candidates": [[c.to_json() for c in ranked] for ranked in candidates]},
        )

    def load_scores(self, task_id: str) -> list[list[Candidate]]:
        path = self.path("score", task_id)
        data = json.loads(path.read_text())
        return [[Candidate.from_json(c, f"{path}") for c in ranked] for ranked in data["candidates"]]
