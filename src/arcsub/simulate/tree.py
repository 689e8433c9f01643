"""The output folder and the Kaggle-like tree the kernel runs in.

Layout under ``--out`` (``OUT``)::

    OUT/kaggle/input/competitions/<slug>/arc-agi_test_challenges.json   the chosen tasks, challenges only
    OUT/kaggle/input/arcsub-model/      symlinks to the model folder's entries (+ arcsub.toml from --config)
    OUT/kaggle/input/arcsub-wheels/     symlinks to the .whl files of --wheels (absent without it)
    OUT/kaggle/working/                 empty before the run; afterwards everything the kernel wrote there
    OUT/kaggle/temp/                    scratch space
    OUT/expected/                       the same tasks' challenges and solutions (outside the kernel's tree)
    OUT/logs/kernel.log                 everything the kernel printed (stdout and stderr)
    OUT/logs/sandbox.json               what the namespace supervisor did (namespace mode)
    OUT/venv/                           with --bundle: the kernel's Python (the bundle's wheels, not arcsub)
    OUT/simulation.json                 the verdict: limits, enforcement, kills, peak RAM, disk, score
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..bundle import WHEELS_DATASET, is_wheels_dataset_file
from ..errors import ArcsubError
from ..io import write_json_atomic
from ..tasks import Task, tasks_to_challenges, tasks_to_solutions

CHALLENGES_FILE = "arc-agi_test_challenges.json"
SOLUTIONS_FILE = "arc-agi_test_solutions.json"
PUBLIC_EVALUATION_FILE = "arc-agi_evaluation_challenges.json"
MODEL_DIR = "arcsub-model"
WHEELS_DIR = WHEELS_DATASET
CONFIG_NAME = "arcsub.toml"
# What a previous simulation leaves in OUT: removed before a new one starts.
OWN_ENTRIES = ("kaggle", "expected", "logs", "venv", "simulation.json")


class SimulationError(ArcsubError):
    """The simulation cannot run as asked (a bad option, a missing kernel or folder)."""


@dataclass(frozen=True)
class Layout:
    out: Path
    slug: str

    @property
    def kaggle(self) -> Path:
        return self.out / "kaggle"

    @property
    def input(self) -> Path:
        return self.kaggle / "input"

    @property
    def competition(self) -> Path:
        return self.input / "competitions" / self.slug

    @property
    def challenges(self) -> Path:
        return self.competition / CHALLENGES_FILE

    @property
    def model(self) -> Path:
        return self.input / MODEL_DIR

    @property
    def wheels(self) -> Path:
        return self.input / WHEELS_DIR

    @property
    def working(self) -> Path:
        return self.kaggle / "working"

    @property
    def temp(self) -> Path:
        return self.kaggle / "temp"

    @property
    def expected(self) -> Path:
        return self.out / "expected"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def kernel_log(self) -> Path:
        return self.logs / "kernel.log"

    @property
    def sandbox_status(self) -> Path:
        return self.logs / "sandbox.json"

    @property
    def report(self) -> Path:
        return self.out / "simulation.json"


def clear_out(out: Path) -> None:
    """Make ``out`` ready for a run: create it, or remove what a previous simulation
    left there; refuse a folder that holds anything else."""
    if out.exists() and not out.is_dir():
        raise SimulationError(f"{out}: `out` is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
    if foreign:
        raise SimulationError(
            f"{out}: holds files the simulator did not write ({', '.join(foreign[:3])}); pass an empty or new `out` folder"
        )
    for name in OWN_ENTRIES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # does not follow the model and wheel symlinks
        elif path.exists() or path.is_symlink():
            path.unlink()


def _link_entries(source: Path, target: Path, *, keep=None) -> list[str]:
    """Symlinks in ``target`` to the entries of ``source`` (those ``keep(name)`` accepts)."""
    target.mkdir(parents=True, exist_ok=True)
    linked = []
    for entry in sorted(source.iterdir()):
        if keep is not None and not (entry.is_file() and keep(entry.name)):
            continue
        os.symlink(entry.resolve(), target / entry.name)
        linked.append(entry.name)
    return linked


def build_tree(
    layout: Layout,
    tasks: list[Task],
    model_dir: Path,
    *,
    config: Path | None = None,
    wheels: Path | None = None,
    placeholder: bool = False,
) -> dict:
    """Write the Kaggle-like tree for ``tasks``; returns what went where (for the report).
    ``placeholder``: the tasks are also the public evaluation file beside the test file,
    as on Kaggle before the scoring rerun (how the kernel tells the placeholder)."""
    layout.competition.mkdir(parents=True)
    write_json_atomic(layout.challenges, tasks_to_challenges(tasks))
    built = {"challenges": str(layout.challenges), "tasks": len(tasks)}
    if placeholder:
        write_json_atomic(layout.competition / PUBLIC_EVALUATION_FILE, tasks_to_challenges(tasks))
        built["public_evaluation"] = str(layout.competition / PUBLIC_EVALUATION_FILE)
    if all(task.has_solutions for task in tasks):
        layout.expected.mkdir(parents=True)
        write_json_atomic(layout.expected / CHALLENGES_FILE, tasks_to_challenges(tasks))
        write_json_atomic(layout.expected / SOLUTIONS_FILE, tasks_to_solutions(tasks))
        built["solutions"] = str(layout.expected / SOLUTIONS_FILE)
    model_files = _link_entries(model_dir, layout.model)
    if config is not None:
        if CONFIG_NAME in model_files:
            os.unlink(layout.model / CONFIG_NAME)
        shutil.copyfile(config, layout.model / CONFIG_NAME)
    built["model"] = {"source": str(model_dir), "entries": len(model_files), "config": str(config) if config else None}
    if wheels is not None:
        names = _link_entries(wheels, layout.wheels, keep=is_wheels_dataset_file)
        if not any(name.endswith(".whl") for name in names):
            raise SimulationError(f"{wheels}: no .whl files in the `wheels` folder; pass the folder that holds them")
        built["wheels"] = {"source": str(wheels), "files": names}
    layout.working.mkdir(parents=True)
    layout.temp.mkdir(parents=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    return built
