"""Weighted mixing of task sources: which source, then which task, a prompt comes from.

``Mixture(weights, tasks)`` picks a source with probability weight / sum of weights,
then a task uniformly within it. Both training paths draw through it with the loop's
per-micro-step generator, so a draw depends only on (seed, process, micro-step): a
resumed run sees what an uninterrupted one would, and each process its own prompts.

``MixedPrompts`` draws fresh prompts on the fly (one ``LeaveOneOut`` per source: task
ids may repeat across sources, e.g. RE-ARC tasks named after the ARC task they
imitate); ``cache.CachedPrompts`` takes one of K stored variants instead.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from ..prompts import TokenizedPrompt
from .data import LeaveOneOut


class Mixture:
    def __init__(self, weights: Sequence[float], tasks: Sequence[Sequence[str]]):
        if len(weights) != len(tasks) or not weights:
            raise ValueError("one weight per source, and at least one source")
        if any(not ids for ids in tasks):
            raise ValueError("every source needs at least one task to draw")
        self.weights = list(weights)
        self.tasks = [list(ids) for ids in tasks]
        self._cumulative = list(itertools.accumulate(self.weights))

    def pick(self, rng: random.Random) -> tuple[int, str]:
        """(source index, task id). One source or one task consumes no randomness there,
        so a single-source run draws exactly as ``LeaveOneOut`` alone does."""
        source = 0
        if len(self.weights) > 1:
            source = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
            source = min(source, len(self.weights) - 1)  # rounding at the top end
        ids = self.tasks[source]
        return source, ids[rng.randrange(len(ids))] if len(ids) > 1 else ids[0]


class MixedPrompts:
    """``(micro_step, rng) -> TokenizedPrompt``: a fresh prompt from a weighted source."""

    def __init__(self, mixture: Mixture, samplers: Sequence[LeaveOneOut]):
        self.mixture, self.samplers = mixture, list(samplers)

    def __call__(self, micro_step: int, rng: random.Random) -> TokenizedPrompt:
        source, task_id = self.mixture.pick(rng)
        return self.samplers[source].draw(task_id, rng)
