"""Rule-based predictions that need no model: a dihedral transform followed by a
cell-wise colour map, kept when it reproduces every train pair.

They cost microseconds, so the kernel can write a complete submission from them
before any heavy import, and the model's candidates can only improve on it. They
solve a handful of ARC tasks (flips, rotations, recolourings) and nothing more.
"""

from __future__ import annotations

from .augment import TRANSFORMS, Augmentation
from .selection import Prediction
from .tasks import Grid, Task


def _learn_colour_map(pairs: list[tuple[Grid, Grid]]) -> dict[int, int] | None:
    mapping: dict[int, int] = {}
    for source, target in pairs:
        if len(source) != len(target) or len(source[0]) != len(target[0]):
            return None
        for row_in, row_out in zip(source, target):
            for a, b in zip(row_in, row_out):
                if mapping.setdefault(a, b) != b:
                    return None
    return mapping


def baseline_predictions(task: Task) -> list[list[Prediction]]:
    """Per test input, one prediction per transform whose rule fits all train pairs."""
    rules = []
    for name in TRANSFORMS:
        transform = Augmentation(name)
        mapping = _learn_colour_map([(transform.apply_grid(p.input), p.output) for p in task.train])
        if mapping is not None:
            rules.append((transform, mapping))
    per_test = []
    for pair in task.test:
        predictions = []
        for transform, mapping in rules:
            moved = transform.apply_grid(pair.input)
            grid = tuple(tuple(mapping.get(c, c) for c in row) for row in moved)
            predictions.append(Prediction(grid, 0.0, transform.key))
        per_test.append(predictions)
    return per_test
