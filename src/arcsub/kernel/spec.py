"""What the supervisor tells a worker at start (a JSON file), shared by both sides."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass
class WorkerSpec:
    """What the supervisor tells a worker (written as JSON, path in ``--spec``)."""

    index: int
    test_file: str
    model_dir: str
    config_file: str | None
    results_dir: str
    predictions_dir: str
    adapters_dir: str
    device: str  # cuda | cpu
    cores: list[int] = dataclasses.field(default_factory=list)  # CPU: the cores this worker uses
    backend: str | None = None  # overrides inference.backend (transformers after a vLLM failure)
    faults: dict[str, str] = dataclasses.field(default_factory=dict)  # the run request's injected faults

    @classmethod
    def read(cls, path: str) -> WorkerSpec:
        return cls(**json.loads(Path(path).read_text()))
