"""What the kernel finds under Kaggle's input root, whatever the layout.

Kaggle has mounted inputs as ``/kaggle/input/<slug>`` (older images) and as
``/kaggle/input/competitions/<slug>``, ``.../datasets/<owner>/<slug>``,
``.../models/<owner>/<model>/<framework>/<variation>/<version>`` (newer ones). Rather
than guess one, the kernel walks the root a few levels deep and recognises each input
by its contents: the competition by its test challenges file, the model by a
``config.json`` beside weights, the settings by ``arcsub.toml``, the wheels by an
``arcsub-*.whl``, and the run request by ``arcsub-run.json``.

The run request (:class:`RunRequest`) is how ``arcsub simulate`` and ``arcsub evaluate``
tell the kernel what run they want: the competition profile, the budget, the seconds
per task, the workers. On Kaggle there is none, and the kernel decides from the
competition it finds; the environment carries only Kaggle's own signals.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import ArcsubError
from ..io import write_json_atomic

TEST_FILE = "arc-agi_test_challenges.json"
EVALUATION_FILE = "arc-agi_evaluation_challenges.json"
CONFIG_FILE = "arcsub.toml"
RUN_REQUEST_FILE = "arcsub-run.json"
# Faults the simulator injects (tests): fault -> the task id it strikes ("start" for
# fail_engine: every vLLM engine's start); what each does: kernel/worker.py.
FAULTS = ("fail_task", "nan_loss", "fail_engine", "stall_task")
# Beside the wheels: what kernel/main.py removes from the image before installing them
# (its INSTALL_FILE; that file cannot import this one, it runs before arcsub exists).
INSTALL_PLAN = "arcsub-install.json"
MAX_DEPTH = 7  # models/<owner>/<model>/<framework>/<variation>/<version>/<folder>
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class InputsNotFoundError(ArcsubError):
    pass


class RunRequestError(ArcsubError):
    pass


@dataclass(frozen=True)
class RunRequest:
    """What the simulator or ``arcsub evaluate`` asks of the kernel (``arcsub-run.json``);
    each value left out (None) is the competition profile's."""

    competition: str | None = None  # a competition profile's name or TOML file
    budget_s: float | None = None  # the time limit instead of the profile's
    task_s: float | None = None  # arcsub evaluate: the seconds each task gets on average
    workers: int | None = None  # worker processes instead of the profile's
    faults: dict[str, str] = field(default_factory=dict)  # the simulator's injected faults (FAULTS)

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise RunRequestError(problem)

    def problem(self) -> str | None:
        """What is wrong, naming the field (None: nothing)."""
        if self.competition is not None and (not isinstance(self.competition, str) or not self.competition):
            return f"competition = {self.competition!r}; expected a competition profile's name or TOML file"
        for name in ("budget_s", "task_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                return f"{name} = {value!r}; expected a positive number of seconds"
        workers = self.workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            return f"workers = {workers!r}; expected a whole number, at least 1"
        faults = self.faults
        if not isinstance(faults, dict) or any(k not in FAULTS or not isinstance(v, str) for k, v in faults.items()):
            return f"faults = {faults!r}; expected task ids by fault ({', '.join(FAULTS)})"
        return None

    def to_dict(self) -> dict:
        """The fields that are set (what the file holds)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}

    def write(self, path: str | os.PathLike) -> Path:
        """The request as ``path`` (JSON; the fields that are set)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict(), indent=1)
        return path


def read_run_request(path: str | os.PathLike | None) -> RunRequest:
    """The request in ``path`` (None: no request, every value the profile's); an unknown
    field or a wrong value is one line naming the file and the field."""
    if path is None:
        return RunRequest()
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRequestError(f"{path}: run request not found") from None
    except (OSError, ValueError) as exc:
        raise RunRequestError(f"{path}: not a readable JSON run request ({exc})") from None
    if not isinstance(values, dict):
        raise RunRequestError(f"{path}: expected a JSON object of run settings")
    known = [f.name for f in fields(RunRequest)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise RunRequestError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        return RunRequest(**values)
    except RunRequestError as exc:
        raise RunRequestError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class KernelInputs:
    test_file: Path
    model_dir: Path | None
    config_file: Path | None
    wheels_dir: Path | None
    run_request: Path | None = None  # arcsub-run.json: the simulator's or evaluate's request

    @property
    def competition_dir(self) -> Path:
        return self.test_file.parent

    def describe(self) -> list[str]:
        return [
            f"tasks: {self.test_file}",
            f"model: {self.model_dir or 'none found'}",
            f"settings: {self.config_file or 'defaults'}",
            f"run request: {self.run_request or 'none (the competition decides)'}",
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
    tests, models, configs, wheels, requests = [], [], [], [], []
    for folder, files in _walk(root):
        if TEST_FILE in files:
            tests.append(folder / TEST_FILE)
        if _is_model_dir(files):
            models.append(folder)
        if CONFIG_FILE in files:
            configs.append(folder / CONFIG_FILE)
        if any(f.startswith("arcsub-") and f.endswith(".whl") for f in files):
            wheels.append(folder)
        if RUN_REQUEST_FILE in files:
            requests.append(folder / RUN_REQUEST_FILE)
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
        run_request=requests[0] if requests else None,
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
