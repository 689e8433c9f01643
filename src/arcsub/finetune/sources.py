"""The task sources of an offline run: ``SOURCE@WEIGHT`` specs, loaded, and the
validation tasks split off so that none of them is ever trained on.

A spec is any task source ``arcsub.tasks.load_tasks`` reads (a named dataset such as
``arc1/training``, a challenges file, a folder of task JSON files, with an optional
selector), optionally followed by ``@WEIGHT`` (default 1): the chance that a training
prompt comes from a source is its weight over the sum of weights.

Validation tasks come from ``--val-data`` sources and from ``--val-tasks N`` (N tasks
drawn with the seed from the training sources). Either way they are held out: a
training task with a validation task's id, or one that would make the leakage guard
count a validation task as seen (every input grid of it among the trained grids), is
left out of training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFoundError, FinetuneError
from ..leakage import TrainingManifest, grid_hash, seen_tasks, task_grids
from ..tasks import Task, grid_to_list, load_tasks

log = logging.getLogger("arcsub.finetune")


@dataclass(frozen=True)
class SourceSpec:
    source: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.source if self.weight == 1 else f"{self.source}@{self.weight:g}"


def parse_source(text: str, where: str = "--data") -> SourceSpec:
    """``"arc1/training@2"`` -> SourceSpec("arc1/training", 2.0). ``where`` names the
    flag or config key in errors. A path that exists is taken whole, ``@`` included."""
    text = text.strip()
    if "@" not in text or Path(text).exists():
        source, weight = text, 1.0
    else:
        source, raw = text.rsplit("@", 1)
        try:
            weight = float(raw)
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise FinetuneError(
                f"{where} {text}: the weight {raw!r} is not a positive number; write SOURCE@WEIGHT (arc1/training@2)"
            )
    if not source:
        raise FinetuneError(f"{where} {text!r}: names no task source; e.g. arc1/training or a folder of task JSON")
    return SourceSpec(source, weight)


def parse_sources(texts: Sequence[str], where: str) -> list[SourceSpec]:
    specs = [parse_source(t, where) for t in texts]
    names = [s.source for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FinetuneError(f"{where}: {', '.join(repeated)} given twice; give each source once, with one weight")
    return specs


@dataclass
class Source:
    """A loaded source: its spec, its tasks (those left to train on, for training
    sources) and a digest of their content (part of the data cache's key)."""

    spec: SourceSpec
    tasks: list[Task]

    @property
    def digest(self) -> str:
        return tasks_digest(self.tasks)


def tasks_digest(tasks: Sequence[Task]) -> str:
    h = hashlib.sha256()
    for task in tasks:
        pairs = [[grid_to_list(p.input), grid_to_list(p.output)] for p in (*task.train, *task.test)]
        h.update(json.dumps([task.id, len(task.train), pairs], separators=(",", ":")).encode())
    return h.hexdigest()


def load_sources(specs: Sequence[SourceSpec], where: str, *, skip_invalid: bool = False) -> list[Source]:
    """Load every source; an unknown one fails naming ``where`` (the flag or key)."""
    loaded = []
    for spec in specs:
        try:
            tasks = load_tasks(spec.source, skip_invalid=skip_invalid).tasks
        except DatasetNotFoundError as exc:
            raise FinetuneError(f"{where} {spec}: {exc}") from None
        if not tasks:
            raise FinetuneError(f"{where} {spec}: holds no task; check its selector")
        loaded.append(Source(spec, tasks))
    return loaded


def drop_repeated(sources: Sequence[Source], where: str) -> tuple[list[Source], int]:
    """Each task id trained from the first source that holds it: arc2/training repeats 391
    of arc1/training's tasks, which would otherwise be drawn twice as often as the rest.
    Returns the sources and how many tasks were dropped."""
    seen: set[str] = set()
    kept = []
    for source in sources:
        tasks = [t for t in source.tasks if t.id not in seen]
        if not tasks:
            raise FinetuneError(f"{where} {source.spec}: every task of it is in an earlier source; drop it")
        seen |= {t.id for t in tasks}
        kept.append(Source(source.spec, tasks))
    return kept, sum(len(s.tasks) for s in sources) - sum(len(s.tasks) for s in kept)


def draw_held_out(sources: Sequence[Source], count: int, seed: int) -> list[Task]:
    """``count`` tasks drawn with ``seed`` from the training sources (distinct ids; a
    task found in several sources is taken from the first)."""
    if count == 0:
        return []
    first: dict[str, Task] = {}
    for source in sources:
        for task in source.tasks:
            first.setdefault(task.id, task)
    if count >= len(first):
        raise FinetuneError(
            f"--val-tasks {count}: the training sources hold {len(first)} distinct task(s); "
            f"hold out fewer so that some are left to train on"
        )
    digest = hashlib.sha256(f"{seed}:val-tasks".encode()).digest()
    chosen = random.Random(int.from_bytes(digest[:8], "big")).sample(sorted(first), count)
    return [first[task_id] for task_id in sorted(chosen)]


def hold_out(sources: Sequence[Source], validation: Sequence[Task], where: str) -> tuple[list[Source], int]:
    """The training sources without the validation tasks: by id, then any task that
    holds an input grid of a validation task the leakage guard would count as seen
    (all its input grids trained). Returns the sources and how many tasks were left out."""
    ids = {task.id for task in validation}
    kept = [Source(s.spec, [t for t in s.tasks if t.id not in ids]) for s in sources]
    manifest = TrainingManifest()
    for source in kept:
        manifest.add(source.spec.source, source.tasks)
    copied = {s.task_id for s in seen_tasks(validation, manifest)}
    if copied:
        grids = {grid_hash(p.input) for t in validation if t.id in copied for p in (*t.train, *t.test)}
        kept = [Source(s.spec, [t for t in s.tasks if not task_grids(t) & grids]) for s in kept]
    removed = sum(len(s.tasks) for s in sources) - sum(len(s.tasks) for s in kept)
    for before, after in zip(sources, kept):
        if not after.tasks:
            raise FinetuneError(
                f"{where} {before.spec}: every task of it is held out (validation or excluded); nothing of it is "
                "left to train on"
            )
    return kept, removed
