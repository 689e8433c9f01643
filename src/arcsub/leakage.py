"""What a model was trained on, and whether an evaluation would score it on the same tasks.

Offline fine-tuning writes ``arcsub-training.json`` into the folders it produces: the
ids of the tasks it trained on and a hash of every grid in them, and the ids of the
tasks it held out for a validation loss (never among the trained ones). The named datasets
overlap under other ids (ARC-AGI-2's training set holds 376 of ARC-AGI-1's 400
evaluation tasks), so a task counts as seen when its id was trained on, or when every
input grid of it, train and test, appears among the trained grids: a copy under another
id. One shared grid is not enough: a small grid recurs by chance. Measured on the named
datasets: arc2/training holds 376 arc1/evaluation tasks (all by id) and 393 arc1/training
tasks (391 by id, 2 by grids); arc1/training and arc1/evaluation share one task by grids
(evaluation 070dd51e has the input grids of training 40853293).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArcsubError
from .io import read_json, write_json_atomic
from .tasks import Grid, Task

TRAINING_MANIFEST = "arcsub-training.json"
MANIFEST_VERSION = 1


class LeakageError(ArcsubError):
    """An evaluation would score a model on tasks it was trained on."""


def grid_hash(grid: Grid) -> str:
    text = json.dumps([list(row) for row in grid], separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def task_grids(task: Task) -> set[str]:
    """Hashes of every grid of a task (inputs and known outputs)."""
    grids = set()
    for pair in (*task.train, *task.test):
        grids.add(grid_hash(pair.input))
        if pair.output is not None:
            grids.add(grid_hash(pair.output))
    return grids


@dataclass
class TrainingManifest:
    """What a model was trained on (sources, task ids, grid hashes), and the tasks held
    out of that training for a validation loss (``held_out``: never among ``task_ids``)."""

    sources: list[str] = field(default_factory=list)
    task_ids: set[str] = field(default_factory=set)
    grid_hashes: set[str] = field(default_factory=set)
    held_out: set[str] = field(default_factory=set)
    # Sources never trained on, each with its task count and how many of them the leakage
    # guard counts as seen by this manifest: 0 is the proof the source was excluded.
    excluded: list[dict] = field(default_factory=list)

    def add(self, source: str, tasks: Iterable[Task]) -> None:
        if source not in self.sources:
            self.sources.append(source)
        for task in tasks:
            self.task_ids.add(task.id)
            self.grid_hashes |= task_grids(task)
        self.held_out -= self.task_ids  # a task trained on (now or by the base model) is no longer held out

    def hold_out(self, tasks: Iterable[Task]) -> None:
        """Record validation tasks; one the model already trained on is not held out."""
        self.held_out |= {task.id for task in tasks} - self.task_ids

    def exclude(self, source: str, tasks: Sequence[Task]) -> dict:
        """Record ``source`` as never trained on, with the guard's count of its tasks seen
        (by id or as copies) by everything trained so far; returns the entry."""
        seen = seen_tasks(tasks, self)
        entry = {"source": source, "tasks": len(tasks), "seen": len(seen), "seen_ids": sorted(s.task_id for s in seen)}
        self.excluded = [e for e in self.excluded if e["source"] != source] + [entry]
        return entry

    def to_json(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "sources": self.sources,
            "excluded": self.excluded,
            "task_ids": sorted(self.task_ids),
            "grid_hashes": sorted(self.grid_hashes),
            "held_out_task_ids": sorted(self.held_out),
        }


def write_training_manifest(folder: str | Path, manifest: TrainingManifest) -> Path:
    return write_json_atomic(Path(folder) / TRAINING_MANIFEST, manifest.to_json())


def read_training_manifest(folder: str | Path) -> TrainingManifest | None:
    """The manifest in a model or adapter folder; None when the folder has none."""
    path = Path(folder) / TRAINING_MANIFEST
    if not path.is_file():
        return None
    data = read_json(path, LeakageError, fix="restore it or retrain")
    try:
        held_out = set(data.get("held_out_task_ids", ()))  # manifests before held-out tasks have none
        excluded = list(data.get("excluded", ()))  # nor do those before excluded sources
        return TrainingManifest(
            list(data["sources"]), set(data["task_ids"]), set(data["grid_hashes"]), held_out, excluded
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise LeakageError(f"{path}: unreadable training manifest ({exc}); restore it or retrain") from None


@dataclass(frozen=True)
class Seen:
    task_id: str
    how: str  # "id" | "grids"


def seen_tasks(tasks: Sequence[Task], manifest: TrainingManifest) -> list[Seen]:
    found = []
    for task in tasks:
        if task.id in manifest.task_ids:
            found.append(Seen(task.id, "id"))
        elif all(grid_hash(p.input) in manifest.grid_hashes for p in (*task.train, *task.test)):
            found.append(Seen(task.id, "grids"))
    return found


def guard_evaluation(tasks: Sequence[Task], model_dir: str | Path, *, allow_overlap: bool = False) -> list[Seen]:
    """Refuse to score a model on tasks its training manifest says it has seen (unless
    ``allow_overlap``); returns the overlap either way."""
    manifest = read_training_manifest(model_dir)
    if manifest is None:
        return []
    seen = seen_tasks(tasks, manifest)
    if seen and not allow_overlap:
        by_id = sum(s.how == "id" for s in seen)
        raise LeakageError(
            f"{model_dir} was trained on {len(seen)} of these {len(tasks)} tasks ({by_id} by id, "
            f"{len(seen) - by_id} as copies under another id; trained on {', '.join(manifest.sources)}): "
            "its score on them would measure memory; evaluate on held-out tasks, or pass `allow_overlap`"
        )
    return seen
