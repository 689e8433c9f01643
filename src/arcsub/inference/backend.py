"""The interface every inference backend implements.

Two operations, both batched over many prompts and each prompt optionally under its
own LoRA adapter (a peft adapter folder):

* ``generate``: n completions per prompt, with text, token ids and the
  log-probability of every generated token (from the raw model distribution).
* ``score``: the log-probability of each token of a given continuation after a given
  prompt (the answer's likelihood, used to rank candidates).

Prompts travel as token ids, not text: the prompt builder tokenized them once, and a
backend that re-tokenized text might add a BOS token or merge differently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    n: int = 1
    max_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    min_p: float = 0.0  # sampling only: tokens below min_p x the likeliest one's probability are dropped
    # > 0: depth-first sampling instead: every completion with probability >= min_prob (n, temperature unused)
    min_prob: float = 0.0
    keep_greedy: bool = False  # depth-first: the greedy completion too, however unlikely
    adapter: str | None = None  # peft adapter folder
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # one per generated token
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_tokens)

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else -math.inf


@dataclass(frozen=True)
class ScoreRequest:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    adapter: str | None = None


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]: ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[tuple[float, ...]]: ...

    def add_adapter(self, path: str) -> None:
        """Declare an adapter made after the backend started (the kernel trains one per task)."""

    def release_adapter(self, path: str) -> None:
        """Forget an adapter no later request will use (frees its memory)."""

    def attention_backends(self) -> list[str]:
        """The attention implementation(s) the engine runs, by name (for the run report)."""

    def close(self) -> None: ...


def adapter_rank(path: str | Path) -> int:
    """The LoRA rank recorded in a peft adapter folder."""
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    ranks = [config.get("r", 0), *config.get("rank_pattern", {}).values()]
    return max(int(r) for r in ranks)
