"""Cost models: seconds (and bytes) per stage as small fitted formulas.

A formula is a sum of named terms with non-negative coefficients, e.g. a TTFT step
``seconds = a + b·T + c·T²`` is ``Fit(("1", "T", "T^2"), (a, b, c))``. A term is a
product of variables (``B*P^2``); the variables are

  T  tokens of one training sequence       B  sequences in one batch
  P  prompt tokens of one sequence         C  context tokens a decode step reads
  L  tokens of one scored sequence (prompt + answer)

The same :class:`CostModel` is filled either from measurements (``measure.py``,
least squares) or from FLOPs and bandwidth (``analytic.py``), so the projection
(``project.py``) does not care where its numbers came from. This module needs numpy
for the fit only; reading a ``profile.json`` imports nothing heavy.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArcsubError
from ..io import read_json

FORMAT = "arcsub-profile"
VERSION = 1

# stage -> the terms a measured fit may use (a subset is chosen: see fit_terms)
STAGE_TERMS: dict[str, tuple[str, ...]] = {
    "train_step_s": ("1", "T", "T^2"),
    "train_memory_bytes": ("1", "T", "T^2"),
    "prefill_s": ("1", "B", "B*P", "B*P^2"),
    "decode_step_s": ("1", "B", "B*C"),
    "score_s": ("1", "B*L", "B*L^2"),
}
REQUIRED_STAGES = ("train_step_s", "prefill_s", "decode_step_s", "score_s")
VARIABLES = set("TBPCL")


class ProfilingError(ArcsubError):
    """A profile cannot be measured, read or projected as asked (a missing or malformed
    ``profile.json``, an unknown model or competition profile, a bad option)."""


# ---------------------------------------------------------------- terms and fits


def term_value(term: str, values: dict[str, float]) -> float:
    """``"B*P^2"`` at ``{"B": 2, "P": 10}`` -> 200.0; ``"1"`` -> 1.0."""
    result = 1.0
    if term == "1":
        return result
    for factor in term.split("*"):
        name, _, power = factor.partition("^")
        if name not in VARIABLES or (power and not power.isdigit()):
            raise ValueError(f"bad term {term!r}")
        result *= float(values[name]) ** (int(power) if power else 1)
    return result


@dataclass(frozen=True)
class Fit:
    terms: tuple[str, ...]
    coef: tuple[float, ...]
    rms_rel_error: float | None = None  # of the fit on its own points (measured fits)
    points: int = 0

    def __call__(self, **values: float) -> float:
        return sum(c * term_value(t, values) for t, c in zip(self.terms, self.coef))

    def formula(self, unit: str = "") -> str:
        parts = [f"{c:.4g}" + ("" if t == "1" else f"·{t}") for t, c in zip(self.terms, self.coef)]
        return " + ".join(parts) + (f" {unit}" if unit else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": list(self.terms),
            "coef": list(self.coef),
            "rms_rel_error": self.rms_rel_error,
            "points": self.points,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Fit:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("terms"), list)
            or not isinstance(data.get("coef"), list)
        ):
            raise ProfilingError(
                f"{where}: expected {{'terms': [...], 'coef': [...]}}; re-run `arcsub profile measure`"
            )
        terms, coef = tuple(data["terms"]), data["coef"]
        if len(terms) != len(coef) or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in coef):
            raise ProfilingError(f"{where}: terms and coef differ in length or hold non-numbers")
        for term in terms:
            try:
                term_value(str(term), dict.fromkeys(VARIABLES, 1.0))
            except ValueError:
                raise ProfilingError(
                    f"{where}: unknown term {term!r}; terms use {', '.join(sorted(VARIABLES))}"
                ) from None
        return cls(terms, tuple(float(c) for c in coef), data.get("rms_rel_error"), int(data.get("points") or 0))


def fit_terms(points: list[dict[str, float]], y: list[float], terms: tuple[str, ...]) -> Fit:
    """Least squares on relative error (each row divided by its y), non-negative
    coefficients: every subset of ``terms`` with no more terms than distinct points is
    solved, those with a negative coefficient are dropped, and the one with the smallest
    error wins (the fewer terms on a tie). A handful of terms makes this exact NNLS."""
    import numpy as np

    if not points or len(points) != len(y):
        raise ProfilingError("nothing measured to fit a cost model to")
    if any(not v > 0 for v in y):
        raise ProfilingError(f"cannot fit non-positive measurements {y}")
    full = np.array([[term_value(t, p) for t in terms] for p in points], dtype=float)
    target = np.asarray(y, dtype=float)
    distinct = len({tuple(sorted(p.items())) for p in points})
    best: tuple[float, int, tuple[int, ...], np.ndarray] | None = None
    for size in range(1, min(len(terms), distinct) + 1):
        for subset in itertools.combinations(range(len(terms)), size):
            a = full[:, subset] / target[:, None]
            coef, *_ = np.linalg.lstsq(a, np.ones_like(target), rcond=None)
            if np.any(coef < -1e-15) or not np.all(np.isfinite(coef)):
                continue
            coef = np.clip(coef, 0.0, None)
            error = float(np.sqrt(np.mean((a @ coef - 1.0) ** 2)))
            if best is None or error < best[0] - 1e-12:
                best = (error, size, subset, coef)
    if best is None:  # cannot happen: a single term through the origin is always >= 0
        raise ProfilingError("no non-negative fit found")
    error, _, subset, coef = best
    return Fit(tuple(terms[i] for i in subset), tuple(float(c) for c in coef), error, len(points))


# ---------------------------------------------------------------- the model


@dataclass
class CostModel:
    """What one model costs on one machine, stage by stage.

    ``fits``: ``train_step_s`` (T), ``train_memory_bytes`` (T; peak GPU memory, absent
    on CPU), ``prefill_s`` (B, P), ``decode_step_s`` (B, C), ``score_s`` (B, L).
    ``generation_batch``: the batch the projection generates and scores in."""

    label: str
    source: str  # "measured on <device>, <date>" or "analytic: <gpu>"
    device: str
    fits: dict[str, Fit]
    load_s: float
    engine_start_s: float
    generation_batch: int
    params: int | None = None
    measured_ranges: dict[str, float] = field(default_factory=dict)  # largest T, P, L measured
    assumptions: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.source.startswith("measured")

    def step_seconds(self, tokens: int) -> float:
        return self.fits["train_step_s"](T=tokens)

    def packed_step(self, length: int, tokens_per_step: int) -> tuple[int, float]:
        """(sequences, seconds) of a packed step (``finetune.tokens_per_step``) of
        ``length``-token sequences: as many as fit (at least one), timed as one
        sequence of their total length (a packed row's attention spans the whole row
        under sdpa's block-diagonal mask)."""
        count = max(1, tokens_per_step // length)
        return count, self.step_seconds(count * length)

    def step_memory_bytes(self, tokens: int) -> float | None:
        fit = self.fits.get("train_memory_bytes")
        return None if fit is None else fit(T=tokens)

    def generate_seconds(self, batch: int, prompt: int, new_tokens: int) -> float:
        """One batch: prefill, then ``new_tokens - 1`` decode steps (the first token
        comes out of the prefill) reading on average half the answer as context."""
        prefill = self.fits["prefill_s"](B=batch, P=prompt)
        steps = max(0, new_tokens - 1)
        return prefill + steps * self.fits["decode_step_s"](B=batch, C=prompt + new_tokens / 2)

    def seconds_per_prediction(self, prompt: int, answer: int, batch: int | None = None) -> float:
        batch = batch or self.generation_batch
        return self.generate_seconds(batch, prompt, answer) / batch

    def seconds_per_score(self, prompt: int, answer: int, batch: int | None = None) -> float:
        batch = batch or self.generation_batch
        return self.fits["score_s"](B=batch, L=prompt + answer) / batch

    def extrapolated(self, variable: str, value: float) -> bool:
        top = self.measured_ranges.get(variable)
        return top is not None and value > top * 1.05

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "source": self.source,
            "device": self.device,
            "params": self.params,
            "load_s": self.load_s,
            "engine_start_s": self.engine_start_s,
            "generation_batch": self.generation_batch,
            "measured_ranges": self.measured_ranges,
            "fits": {k: v.to_dict() for k, v in self.fits.items()},
            "assumptions": self.assumptions,
            "settings": self.settings,
        }


# ---------------------------------------------------------------- profile.json


def _number(data: dict, key: str, where: str) -> float:
    value = data.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ProfilingError(f"{where}: {key} = {value!r}; expected a non-negative number (re-run the measurement)")
    return float(value)


def cost_model_from_dict(data: Any, where: str) -> CostModel:
    """The ``cost_model`` entry of a profile.json, checked field by field."""
    if not isinstance(data, dict):
        raise ProfilingError(f"{where}: cost_model is not an object; re-run `arcsub profile measure`")
    fits_data = data.get("fits")
    if not isinstance(fits_data, dict):
        raise ProfilingError(f"{where}: cost_model.fits missing; re-run `arcsub profile measure`")
    missing = [s for s in REQUIRED_STAGES if s not in fits_data]
    if missing:
        raise ProfilingError(f"{where}: cost_model.fits lacks {', '.join(missing)}; re-run `arcsub profile measure`")
    fits = {k: Fit.from_dict(v, f"{where}: cost_model.fits.{k}") for k, v in fits_data.items() if v is not None}
    batch = data.get("generation_batch")
    if not isinstance(batch, int) or batch < 1:
        raise ProfilingError(f"{where}: cost_model.generation_batch = {batch!r}; expected a positive integer")
    return CostModel(
        label=str(data.get("label", "?")),
        source=str(data.get("source", "?")),
        device=str(data.get("device", "?")),
        fits=fits,
        load_s=_number(data, "load_s", f"{where}: cost_model"),
        engine_start_s=_number(data, "engine_start_s", f"{where}: cost_model"),
        generation_batch=batch,
        params=data.get("params"),
        measured_ranges=dict(data.get("measured_ranges") or {}),
        assumptions=list(data.get("assumptions") or []),
        settings=dict(data.get("settings") or {}),
    )


def check_profile_json(data: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``data`` when it is a ``profile.json`` of this arcsub's version, else one line."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfilingError(
            f'{path}: not an arcsub profile (no "format": "{FORMAT}"); pass a file that `arcsub profile measure` wrote'
        )
    if data.get("version") != VERSION:
        raise ProfilingError(
            f"{path}: profile version {data.get('version')!r}, this arcsub reads {VERSION}; re-measure"
        )
    return data


def load_profile_json(path: str | os.PathLike) -> dict[str, Any]:
    data = read_json(
        path,
        ProfilingError,
        missing=f"profile file not found; measure one with `arcsub profile measure --model M -o {path}`",
        fix="re-run `arcsub profile measure`",
    )
    return check_profile_json(data, path)


def load_cost_model(path: str | os.PathLike) -> CostModel:
    """The fitted cost model of a ``profile.json`` written by ``measure_profile``."""
    data = load_profile_json(path)
    return cost_model_from_dict(data.get("cost_model"), str(path))
