"""A backend wrapper that keeps engine calls short enough to stop at a deadline.

One task's prompts can make a single engine call of minutes (long answers from a
model that does not stop). Behind this wrapper a call goes to the engine in pieces
of at most ``piece`` requests, and no piece starts that is expected (from the slowest
rate per request of the same operation measured behind the wrapper so far, or before
its first piece the rate brought in, ``expected``) to end after the deadline; near the
deadline pieces get smaller. A rate measured here replaces the one brought in: that is
priced from other tasks' sizes, and in an evaluation on this CPU where it was three
times too high, a task left its 280 s slice after 82 s, one prompt done and the
second refused. Generation that is cut returns no completions for the requests left
(fewer predictions, never a wrong one); scoring that is cut raises
``DeadlineReached``, because a candidate scored under only some augmentations would be
ranked on a different scale from the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .backend import Backend, Completion, GenerationRequest, ScoreRequest


class DeadlineReached(Exception):
    pass


OPERATIONS = ("generate", "score")
PIECE_SHARE = 0.25  # a piece is sized to take at most this share of the time left


class DeadlineBackend:
    """``expected``: seconds per request per operation measured before (the kernel's
    worker measures both at start), so the first piece of a task is not sized blind."""

    def __init__(self, backend: Backend, deadline: float, piece: int = 8, expected: dict[str, float] | None = None):
        self.backend = backend
        self.deadline = deadline
        self.piece = piece
        # seconds per request of the slowest piece so far, per operation (before the first,
        # the rate brought in): a slow generation says nothing of how long scoring takes
        # (and must not keep scoring from starting)
        self.rate = {op: max(0.0, (expected or {}).get(op, 0.0)) for op in OPERATIONS}
        self.cut = False
        # requests finished and seconds spent per operation: what the kernel's plan learns from
        self.work = {op: [0, 0.0] for op in OPERATIONS}
        self.name = backend.name
        if hasattr(backend, "deadline"):  # the transformers backend can also stop inside a call
            backend.deadline = deadline

    def piece_size(self, operation: str) -> int:
        """``piece`` requests, fewer when at the known rate they would take more than
        ``PIECE_SHARE`` of the time left: the last piece before the deadline is short."""
        rate = self.rate[operation]
        if rate <= 0:
            return self.piece
        return max(1, min(self.piece, int(PIECE_SHARE * (self.deadline - time.time()) / rate)))

    def no_time(self, operation: str, size: int) -> bool:
        return time.time() + size * self.rate[operation] > self.deadline

    def _pieces(self, requests, operation: str):
        start = 0
        while start < len(requests):
            size = min(self.piece_size(operation), len(requests) - start)
            if self.no_time(operation, size):
                self.cut = True
                return
            began = time.time()
            piece = requests[start : start + size]
            start += size
            yield piece
            spent = time.time() - began
            measured = spent / len(piece)
            first = self.work[operation][0] == 0
            self.rate[operation] = measured if first else max(self.rate[operation], measured)
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
