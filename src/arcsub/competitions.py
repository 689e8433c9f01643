"""Competition profiles: what a Kaggle competition gives a kernel, as data.

Each profile is a TOML file: the competition (slug, hidden task count, time limit,
working disk) and its machine (GPUs, memory, precision, RAM, CPUs), plus two planning
values (safety margin, vLLM's share of each GPU). The shipped ones live beside this
module in ``competitions/``; a user adds or overrides one by dropping a file of the same
shape into ``$ARCSUB_PROFILES_DIR`` (default ``~/.config/arcsub/profiles``). Facts not
officially confirmed are listed in ``assumed``, and every report repeats them.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ArcsubError
from .io import read_toml

SHIPPED_DIR = Path(__file__).with_name("competitions")
DEFAULT_COMPETITION = "arc-prize-2024"


class CompetitionError(ArcsubError):
    pass


@dataclass(frozen=True)
class Machine:
    shape: str  # kernel-metadata.json machine_shape ("cpu" for local machines)
    accelerator: str  # cuda | cpu
    gpus: int
    gpu_name: str
    gpu_memory_gb: float
    compute_capability: str
    bf16: bool  # native bf16: train and serve in bf16, else fp16 (+ grad scaler)
    ram_gb: float
    cpus: int
    workers: int = 0  # worker processes; 0: one per GPU

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, self.gpus)

    @property
    def precision(self) -> str:
        """The finetune.precision this machine trains in."""
        if self.accelerator == "cpu":
            return "fp32"
        return "bf16" if self.bf16 else "fp16"

    @property
    def serving_dtype(self) -> str:
        """The inference.dtype this machine serves in."""
        if self.accelerator == "cpu":
            return "float32"
        return "bfloat16" if self.bf16 else "float16"


@dataclass(frozen=True)
class Plan:
    safety_margin_s: float  # the kernel plans to finish this long before the limit
    vllm_memory_share: float  # gpu_memory_utilization of each worker's engine (CUDA)


@dataclass(frozen=True)
class Competition:
    name: str
    slug: str  # the competition's Kaggle slug (its input folder)
    description: str
    hidden_tasks: int
    time_limit_s: float
    working_disk_gb: float
    internet: bool
    machine: Machine
    plan: Plan
    assumed: tuple[str, ...] = field(default=())
    source: str = ""  # the file it was read from

    def summary(self) -> str:
        m = self.machine
        where = f"{m.gpus}x {m.gpu_name} ({m.gpu_memory_gb:g} GB, {m.precision})" if m.gpus else f"{m.cpus} CPUs"
        text = (
            f"{self.name}: {self.hidden_tasks} hidden tasks, {self.time_limit_s / 3600:g} h, {where}, "
            f"{m.worker_count} worker(s)"
        )
        if self.assumed:
            text += f"; assumed: {', '.join(self.assumed)}"
        return text


def user_competitions_dir() -> Path:
    return Path(os.environ.get("ARCSUB_PROFILES_DIR") or Path.home() / ".config" / "arcsub" / "profiles")


def _competition_files() -> dict[str, Path]:
    """name -> file; a user's file overrides a shipped one of the same name."""
    files = {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}
    user = user_competitions_dir()
    if user.is_dir():
        files.update({p.stem: p for p in sorted(user.glob("*.toml"))})
    return files


def competition_names() -> list[str]:
    return sorted(_competition_files())


def _section(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise CompetitionError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CompetitionError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = sorted(n for n in required if n not in values and n not in ("machine", "plan"))
    if missing:
        raise CompetitionError(f"{where}: missing key(s) {', '.join(missing)}")
    return values


def read_competition(path: str | Path) -> Competition:
    """One profile file, checked: unknown or missing keys name the file and the key."""
    path = Path(path)
    values = read_toml(path, CompetitionError, missing="profile file not found")
    values = dict(_section(Competition, values, str(path)))
    try:
        machine = Machine(**_section(Machine, values.pop("machine"), f"{path}: [machine]"))
        plan = Plan(**_section(Plan, values.pop("plan"), f"{path}: [plan]"))
        profile = Competition(
            machine=machine, plan=plan, assumed=tuple(values.pop("assumed", ())), source=str(path), **values
        )
    except TypeError as exc:
        raise CompetitionError(f"{path}: {exc}") from None
    problems = []
    if machine.accelerator not in ("cuda", "cpu"):
        problems.append(f"machine.accelerator = {machine.accelerator!r}; use cuda or cpu")
    if machine.accelerator == "cuda" and machine.gpus < 1:
        problems.append("machine.gpus must be at least 1 on a cuda machine")
    if profile.time_limit_s <= plan.safety_margin_s:
        problems.append("time_limit_s must be larger than plan.safety_margin_s")
    if machine.accelerator == "cuda" and not 0 < plan.vllm_memory_share < 1:
        problems.append("plan.vllm_memory_share must be in (0, 1) on a cuda machine")
    if problems:
        raise CompetitionError(f"{path}: " + "; ".join(problems))
    return profile


def load_competition(name_or_path: str | None = None) -> Competition:
    """A profile by name (shipped or the user's), or a path to a TOML file."""
    name = name_or_path or DEFAULT_COMPETITION
    if name.endswith(".toml") or os.sep in name:
        return read_competition(name)
    files = _competition_files()
    if name not in files:
        raise CompetitionError(
            f"unknown competition profile {name!r}; known: {', '.join(sorted(files))} "
            f"(add one as a TOML file in {user_competitions_dir()})"
        )
    return read_competition(files[name])


def competition_for_slug(slug: str) -> Competition | None:
    """The shipped or user profile for a competition slug (a GPU machine's first)."""
    matches = [load_competition(n) for n in competition_names()]
    matches = [p for p in matches if p.slug == slug and p.machine.accelerator == "cuda"]
    return matches[0] if matches else None
