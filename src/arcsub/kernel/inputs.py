"""What the kernel finds under Kaggle's input root, whatever the layout.

Kaggle has mounted inputs as ``/kaggle/input/<slug>`` (older images) and as
``/kaggle/input/competitions/<slug>``, ``.../datasets/<owner>/<slug>``,
``.../models/<owner>/<model>/<framework>/<variation>/<version>`` (newer ones). Rather
than guess one, the kernel walks the root a few levels deep and recognises each input
by its contents: the competition by its test challenges file, the model by a
``config.json`` beside weights, the settings by ``arcsub.toml``, the wheels by an
``arcsub-*.whl``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArcsubError

TEST_FILE = "arc-agi_test_challenges.json"
EVALUATION_FILE = "arc-agi_evaluation_challenges.json"
CONFIG_FILE = "arcsub.toml"
# Beside the wheels: what kernel/main.py removes from the image before installing them
# (its INSTALL_FILE; that file cannot import this one, it runs before arcsub exists).
INSTALL_PLAN = "arcsub-install.json"
MAX_DEPTH = 7  # models/<owner>/<model>/<framework>/<variation>/<version>/<folder>
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class InputsNotFoundError(ArcsubError):
    pass


@dataclass(frozen=True)
class KernelInputs:
    test_file: Path
    model_dir: Path | None
    config_file: Path | None
    wheels_dir: Path | None

    @property
    def competition_dir(self) -> Path:
        return self.test_file.parent

    def describe(self) -> list[str]:
        return [
            f"tasks: {self.test_file}",
            f"model: {self.model_dir or 'none found'}",
            f"settings: {self.config_file or 'defaults'}",
        ]


def _walk(root: Path):
    """Directories under ``root`` (breadth first, ``MAX_DEPTH`` levels), with their files."""
    level = [root]
    for _ in range(MAX_DEPTH + 1):
        following = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            files = {e.name for e in entries if e.is_file()}
            yield folder, files
            following += [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
        level = following


def _is_model_dir(files: set[str]) -> bool:
    return "config.json" in files and any(f.endswith(WEIGHT_SUFFIXES) for f in files)


def find_inputs(input_root: str | os.PathLike) -> KernelInputs:
    root = Path(input_root)
    if not root.is_dir():
        raise InputsNotFoundError(f"{root}: input root not found; attach the competition data to the kernel")
    tests, models, configs, wheels = [], [], [], []
    for folder, files in _walk(root):
        if TEST_FILE in files:
            tests.append(folder / TEST_FILE)
        if _is_model_dir(files):
            models.append(folder)
        if CONFIG_FILE in files:
            configs.append(folder / CONFIG_FILE)
        if any(f.startswith("arcsub-") and f.endswith(".whl") for f in files):
            wheels.append(folder)
    if not tests:
        raise InputsNotFoundError(
            f"{root}: no {TEST_FILE} found (looked {MAX_DEPTH} levels deep); "
            "add the competition to the kernel's competition_sources"
        )
    # A model folder holding the settings is the bundle's; otherwise the first found.
    with_config = [m for m in models if (m / CONFIG_FILE).is_file()]
    model = (with_config or models or [None])[0]
    config = (model / CONFIG_FILE) if model is not None and (model / CONFIG_FILE).is_file() else None
    return KernelInputs(
        test_file=tests[0],
        model_dir=model,
        config_file=config or (configs[0] if configs else None),
        wheels_dir=wheels[0] if wheels else None,
    )


def public_task_ids(competition_dir: Path) -> set[str]:
    """Task ids of the public files beside the test file (evaluation and training)."""
    ids: set[str] = set()
    for name in (EVALUATION_FILE, "arc-agi_training_challenges.json"):
        path = competition_dir / name
        if path.is_file():
            try:
                ids |= set(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
    return ids


def is_placeholder(test_ids: set[str], competition_dir: Path, environ=os.environ) -> bool:
    """Is the test file the public placeholder (an interactive or "Save version" run)
    rather than the hidden set (the scoring rerun)?

    Kaggle sets ``KAGGLE_IS_COMPETITION_RERUN`` in the scoring rerun: then never. Else a
    test file whose every task is a public task beside it is the placeholder; a test
    file with unknown tasks is treated as hidden (the safe side: the full run)."""
    if environ.get("KAGGLE_IS_COMPETITION_RERUN"):
        return False
    public = public_task_ids(competition_dir)
    return bool(test_ids) and bool(public) and test_ids <= public
