"""A backend wrapper that keeps engine calls short enough to stop at a deadline.

One task's prompts can make a single engine call of minutes (long answers from a
model that does not stop). Behind this wrapper a call goes to the engine in pieces
of ``piece`` requests, and no piece starts that is expected (from the longest piece
of the same operation so far) to end after the deadline. Generation that is cut
returns no completions for the requests left (fewer predictions, never a wrong one);
scoring that is cut raises ``DeadlineReached``, because a candidate scored under only
some augmentations would be ranked on a different scale from the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .backend import Backend, Completion, GenerationRequest, ScoreRequest


class DeadlineReached(Exception):
    pass


class DeadlineBackend:
    def __init__(self, backend: Backend, deadline: float, piece: int = 8):
        self.backend = backend
        self.deadline = deadline
        self.piece = piece
        # the longest piece so far, per operation: a long generation piece says nothing of
        # how long a piece of scoring takes (and must not keep scoring from starting)
        self.longest = {"generate": 0.0, "score": 0.0}
        self.cut = False
        # requests finished and seconds spent per operation: what the kernel's plan learns from
        self.work = {"generate": [0, 0.0], "score": [0, 0.0]}
        self.name = backend.name
        if hasattr(backend, "deadline"):  # the transformers backend can also stop inside a call
            backend.deadline = deadline

    def no_time(self, operation: str) -> bool:
        return time.time() + self.longest[operation] > self.deadline

    def _pieces(self, requests, operation: str):
        for start in range(0, len(requests), self.piece):
            if self.no_time(operation):
                self.cut = True
                return
            began = time.time()
            piece = requests[start : start + self.piece]
            yield piece
            spent = time.time() - began
            self.longest[operation] = max(self.longest[operation], spent)
            self.work[operation][0] += len(piece)
            self.work[operation][1] += spent

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results: list[list[Completion]] = []
        for piece in self._pieces(list(requests), "generate"):
            results += self.backend.generate(piece)
        return results + [[] for _ in range(len(requests) - len(results))]

    def score(self, requests: Sequence[ScoreRequest]) -> list[tuple[float, ...]]:
        results: list[tuple[float, ...]] = []
        for piece in self._pieces(list(requests), "score"):
            results += self.backend.score(piece)
        if len(results) < len(requests):
            raise DeadlineReached(f"scoring stopped after {len(results)} of {len(requests)} candidates")
        return results

    def add_adapter(self, path: str) -> None:
        self.backend.add_adapter(path)

    def release_adapter(self, path: str) -> None:
        self.backend.release_adapter(path)

    def close(self) -> None:
        self.backend.close()

    def detach(self) -> None:
        """Give the backend back without the deadline (the next task brings its own)."""
        if hasattr(self.backend, "deadline"):
            self.backend.deadline = None
