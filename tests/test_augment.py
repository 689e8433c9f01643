import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcsub.augment import (
    TRANSFORMS,
    Augmentation,
    BadAugmentationKey,
    augmentation_plan,
    random_augmentation,
    task_rng,
)
from arcsub.tasks import Pair, Task


@st.composite
def grids(draw):
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return tuple(tuple(draw(st.integers(0, 9)) for _ in range(cols)) for _ in range(rows))


@st.composite
def augmentations(draw):
    rng = random.Random(draw(st.integers(0, 2**32)))
    return random_augmentation(
        rng,
        draw(st.integers(1, 6)),
        transform=draw(st.sampled_from(TRANSFORMS)),
        keep_background=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(grid=grids(), aug=augmentations())
def test_inverse_undoes_apply(grid, aug):
    moved = aug.apply_grid(grid)
    assert aug.invert_grid(moved) == grid
    assert Augmentation.parse(aug.key) == aug


def test_the_eight_transforms_are_the_dihedral_group():
    grid = ((1, 2, 3), (4, 5, 6))  # no symmetry: all 8 images differ
    images = {name: Augmentation(name).apply_grid(grid) for name in TRANSFORMS}
    assert len(set(images.values())) == 8
    assert images["rot90"] == ((3, 6), (2, 5), (1, 4))  # counter-clockwise, as numpy.rot90
    assert images["rot270"] == ((4, 1), (5, 2), (6, 3))
    assert images["transpose"] == ((1, 4), (2, 5), (3, 6))
    assert images["antitranspose"] == ((6, 3), (5, 2), (4, 1))
    assert images["flipud"] == ((4, 5, 6), (1, 2, 3))
    assert images["fliplr"] == ((3, 2, 1), (6, 5, 4))


def test_keys_are_small_and_exact():
    aug = Augmentation("rot90", (0, 3, 1, 8, 2, 7, 4, 6, 5, 9), (2, 0, 1))
    assert aug.key == "rot90.c0318274659.o2-0-1"
    assert Augmentation().key == "id"
    for bad in ("spin", "rot90.c012", "rot90.x1", "id.o1-1"):
        with pytest.raises(BadAugmentationKey):
            Augmentation.parse(bad)


def test_keep_background_fixes_colour_zero():
    rng = random.Random(1)
    for _ in range(50):
        assert random_augmentation(rng, 3).colors[0] == 0


def test_apply_task_keeps_pairs_consistent():
    task = Task(
        "t",
        (Pair(((1, 2),), ((2, 1),)), Pair(((3, 0), (0, 4)), ((0, 3), (4, 0))), Pair(((5,),), ((5,),))),
        (Pair(((6, 7),), ((7, 6),)),),
    )
    aug = Augmentation("transpose", (0, 2, 3, 4, 5, 6, 7, 8, 9, 1), (2, 0, 1))
    moved = aug.apply_task(task)
    for new, old_index in zip(moved.train, aug.order, strict=True):
        old = task.train[old_index]
        assert new == Pair(aug.apply_grid(old.input), aug.apply_grid(old.output))
        assert aug.invert_grid(new.output) == old.output
    assert aug.invert_grid(moved.test[0].output) == task.test[0].output
    with pytest.raises(BadAugmentationKey, match="orders 2 train pairs"):
        Augmentation(order=(1, 0)).apply_task(task)


def test_plan_is_distinct_deterministic_and_starts_with_identity(eval_tasks):
    task = eval_tasks[0]
    plan = augmentation_plan(task, 16, seed=3)
    assert plan[0].key == "id"
    assert len({a.key for a in plan}) == 16
    assert [a.transform for a in plan[:8]] == list(TRANSFORMS)
    assert [a.key for a in augmentation_plan(task, 16, seed=3)] == [a.key for a in plan]
    assert [a.key for a in augmentation_plan(task, 16, seed=4)] != [a.key for a in plan]
    assert task_rng("a", 0).random() != task_rng("b", 0).random()
