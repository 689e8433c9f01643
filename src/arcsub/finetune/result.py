"""What a training run did, and why it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Why a run stopped (TrainResult.stop_reason).
STOP_MAX_STEPS = "max_steps"
STOP_DEADLINE = "deadline"
STOP_NON_FINITE = "non_finite"
STOP_SKIPPED = "skipped"  # nothing to train on (set by train_task)


@dataclass
class TrainResult:
    """What a training run did. ``losses`` holds one mean loss per optimizer step."""

    label: str = ""
    precision: str = ""
    total_steps: int = 0  # steps asked for
    steps: int = 0  # optimizer steps taken
    micro_steps: int = 0  # sequences forwarded and backwarded, skipped steps included
    tokens: int = 0  # tokens in those sequences
    seconds: float = 0.0
    max_step_seconds: float = 0.0  # the slowest step: a deadline is overshot by less than this
    losses: list[float] = field(default_factory=list)
    stop_reason: str = ""
    skipped_steps: int = 0  # steps the non-finite guard skipped
    scaler_skips: int = 0  # fp16: steps the gradient scaler skipped while finding its scale
    restored: bool = False  # the guard put back the last good weights
    message: str = ""  # the reason in words, when it is not plain
    val_losses: list[list[float]] = field(default_factory=list)  # [step, mean validation answer loss]
    fp16: dict[str, Any] | None = None  # the merged model's fp16 check (arcsub finetune --merge)

    @property
    def val_loss(self) -> float | None:
        return self.val_losses[-1][1] if self.val_losses else None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tokens_per_second": self.tokens_per_second, "val_loss": self.val_loss}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainResult:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in names})

    def summary(self) -> str:
        first = f"{self.losses[0]:.4f}" if self.losses else "-"
        last = f"{self.losses[-1]:.4f}" if self.losses else "-"
        text = (
            f"{self.label or 'run'}: {self.steps}/{self.total_steps} steps, loss {first} -> {last}, "
            f"{self.tokens_per_second:.0f} tokens/s, {self.seconds:.1f}s, stopped: {self.stop_reason}"
        )
        if self.val_losses:
            text += f", val loss {self.val_loss:.4f} at step {self.val_losses[-1][0]:.0f}"
        return text + (f" ({self.message})" if self.message else "")
