"""Reversible augmentations as small serializable keys.

An augmentation is one of the 8 dihedral transforms of the square, a permutation of
the 10 colours, and optionally a new order of the train pairs. It is written as a key
string (``"rot90.c0318274659.o2-0-1"``; the identity is ``"id"``), so predictions on
disk say exactly how to undo them, and ``Augmentation.parse(key)`` rebuilds it.

Grids transform exactly and invert exactly: ``aug.invert_grid(aug.apply_grid(g)) == g``.
Only grids are inverted: the pair order affects the prompt, not the answer.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .errors import ArcsubError
from .tasks import NUM_COLORS, Grid, Pair, Task

IDENTITY_COLORS = tuple(range(NUM_COLORS))


def _transpose(g: Grid) -> Grid:
    return tuple(zip(*g))


def _flip_rows(g: Grid) -> Grid:  # upside down
    return g[::-1]


def _flip_cols(g: Grid) -> Grid:  # mirror left-right
    return tuple(row[::-1] for row in g)


_TRANSFORMS = {
    "id": lambda g: g,
    "rot90": lambda g: _flip_rows(_transpose(g)),  # counter-clockwise, as numpy.rot90
    "rot180": lambda g: _flip_rows(_flip_cols(g)),
    "rot270": lambda g: _flip_cols(_transpose(g)),
    "flipud": _flip_rows,
    "fliplr": _flip_cols,
    "transpose": _transpose,
    "antitranspose": lambda g: _flip_rows(_flip_cols(_transpose(g))),
}
TRANSFORMS = tuple(_TRANSFORMS)
_INVERSE = {name: name for name in TRANSFORMS} | {"rot90": "rot270", "rot270": "rot90"}


class BadAugmentationKey(ArcsubError):
    pass


@dataclass(frozen=True)
class Augmentation:
    transform: str = "id"
    colors: tuple[int, ...] = IDENTITY_COLORS  # colors[c] is the new colour of c
    order: tuple[int, ...] | None = None  # new train order, as indices into the original

    def __post_init__(self):
        if self.transform not in _TRANSFORMS:
            raise BadAugmentationKey(f"unknown transform {self.transform!r}; use one of {', '.join(TRANSFORMS)}")
        if sorted(self.colors) != list(IDENTITY_COLORS):
            raise BadAugmentationKey(f"colour map {self.colors} is not a permutation of 0-9")
        if self.order is not None and sorted(self.order) != list(range(len(self.order))):
            raise BadAugmentationKey(f"train order {self.order} is not a permutation")
        if self.order is not None and self.order == tuple(range(len(self.order))):
            object.__setattr__(self, "order", None)  # the same augmentation has one key and one value

    # ------------------------------------------------------------ keys

    @property
    def key(self) -> str:
        parts = [self.transform]
        if self.colors != IDENTITY_COLORS:
            parts.append("c" + "".join(map(str, self.colors)))
        if self.order is not None:
            parts.append("o" + "-".join(map(str, self.order)))
        return ".".join(parts)

    @classmethod
    def parse(cls, key: str) -> Augmentation:
        transform, *rest = key.split(".")
        colors, order = IDENTITY_COLORS, None
        try:
            for part in rest:
                if part.startswith("c") and len(part) == 1 + NUM_COLORS:
                    colors = tuple(int(ch) for ch in part[1:])
                elif part.startswith("o") and len(part) > 1:
                    order = tuple(int(i) for i in part[1:].split("-"))
                else:
                    raise ValueError(part)
        except ValueError:
            raise BadAugmentationKey(
                f"bad augmentation key {key!r}; expected e.g. 'rot90.c0318274659.o2-0-1'"
            ) from None
        return cls(transform, colors, order)

    def __str__(self) -> str:
        return self.key

    # ------------------------------------------------------------ grids

    def apply_grid(self, grid: Grid) -> Grid:
        moved = _TRANSFORMS[self.transform](grid)
        if self.colors == IDENTITY_COLORS:
            return tuple(tuple(row) for row in moved)
        return tuple(tuple(self.colors[c] for c in row) for row in moved)

    def invert_grid(self, grid: Grid) -> Grid:
        inverse_colors = [0] * NUM_COLORS
        for old, new in enumerate(self.colors):
            inverse_colors[new] = old
        recoloured = tuple(tuple(inverse_colors[c] for c in row) for row in grid)
        return tuple(tuple(row) for row in _TRANSFORMS[_INVERSE[self.transform]](recoloured))

    # ------------------------------------------------------------ tasks

    def apply_task(self, task: Task) -> Task:
        """Transform every grid of the task and reorder its train pairs."""
        if self.order is not None and len(self.order) != len(task.train):
            raise BadAugmentationKey(
                f"task {task.id}: augmentation {self.key} orders {len(self.order)} train pairs, "
                f"the task has {len(task.train)}"
            )
        train = [task.train[i] for i in self.order] if self.order is not None else list(task.train)

        def move(pair: Pair) -> Pair:
            out = None if pair.output is None else self.apply_grid(pair.output)
            return Pair(self.apply_grid(pair.input), out)

        return Task(task.id, tuple(move(p) for p in train), tuple(move(p) for p in task.test))


def task_rng(task_id: str, seed: int, purpose: str = "") -> random.Random:
    """A generator that depends only on (task, seed, purpose): runs are reproducible
    and each task gets its own stream whatever order tasks are processed in."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_augmentation(
    rng: random.Random,
    num_train: int,
    *,
    transform: str | None = None,
    keep_background: bool = True,
    permute_colors: bool = True,
    shuffle_order: bool = True,
) -> Augmentation:
    """One random augmentation (transform chosen at random unless given)."""
    transform = transform or rng.choice(TRANSFORMS)
    colors = IDENTITY_COLORS
    if permute_colors:
        movable = list(range(1 if keep_background else 0, NUM_COLORS))
        shuffled = movable[:]
        rng.shuffle(shuffled)
        colors = tuple(range(NUM_COLORS - len(movable))) + tuple(shuffled)
    order = None
    if shuffle_order and num_train > 1:
        order = list(range(num_train))
        rng.shuffle(order)
        order = tuple(order)
    return Augmentation(transform, colors, order)


def augmentation_plan(
    task: Task,
    count: int,
    *,
    seed: int = 0,
    keep_background: bool = True,
    permute_colors: bool = True,
    shuffle_order: bool = True,
    purpose: str = "infer",
) -> list[Augmentation]:
    """``count`` distinct augmentations for a task: the identity first, then the other
    dihedral transforms in turn, each with a random colour map and train order."""
    rng = task_rng(task.id, seed, purpose)
    plan: list[Augmentation] = [Augmentation()]
    seen = {plan[0].key}
    attempts = 0
    while len(plan) < count and attempts < 100 * count:
        attempts += 1
        transform = TRANSFORMS[len(plan) % len(TRANSFORMS)]
        aug = random_augmentation(
            rng,
            len(task.train),
            transform=transform,
            keep_background=keep_background,
            permute_colors=permute_colors,
            shuffle_order=shuffle_order,
        )
        if aug.key not in seen:
            seen.add(aug.key)
            plan.append(aug)
    return plan[:count]
