"""Fixed costs of a TTFT step, fitted from measured step times of several models on one device.

A LoRA step of a small model is dominated by costs that do not grow with the tokens it
processes (kernel launches, Python, the gradient scaler, casts, the optimizer's many
small tensors): per step and per layer. From measured steps (``profile.json`` files of
``arcsub profile measure``, or the JSON of ``bench/ttft_throughput.py``), over models
of different depths on ONE device, this fits

    step seconds ≈ overhead_step + overhead_layer · layers + FLOPs / rate

with FLOPs from ``flops.py`` and every coefficient non-negative, on relative error.
Every subset of the three terms is solved and the best one kept (as ``fit_terms``
does); a subset whose rate would pass the device's peak is refused (physically
impossible): on a fast GPU the arithmetic can hide entirely behind the fixed costs,
and then no rate is fitted (``seconds_per_flop = 0``).

Fits are recorded with their device in ``step_fits.json`` (``arcsub profile fit
--record``); the analytic estimate takes its per-step overhead from them
(``analytic.py``). Pure Python: no numpy, no torch.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io import read_json, write_json_atomic
from ..models import CANDIDATES
from .cost_model import FORMAT as PROFILE_FORMAT
from .cost_model import ProfilingError, check_profile_json
from .flops import datasheet_peak, step_arithmetic

FITS_FORMAT = "arcsub-step-fits"
BENCH_FORMAT = "arcsub-ttft-throughput"
RECORDED = Path(__file__).with_name("step_fits.json")
TERMS = ("step", "layer", "flop")


@dataclass(frozen=True)
class StepPoint:
    """One measured step time: a model (its depth) and the arithmetic of the step."""

    model: str
    layers: int
    flops: float
    seconds: float
    tokens: int

    def column(self, term: str) -> float:
        return {"step": 1.0, "layer": float(self.layers), "flop": self.flops}[term]


@dataclass
class StepCostFit:
    """``seconds = step_s + layer_s·layers + seconds_per_flop·FLOPs`` on ``device``."""

    device: str
    date: str
    step_s: float
    layer_s: float
    seconds_per_flop: float  # 0: the arithmetic hid behind the fixed costs (no rate fitted)
    peak_flops: float | None  # the peak the utilisation is stated against
    rms_rel_error: float
    points: int
    models: dict[str, int]  # label -> layers
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def overhead_s(self, layers: int) -> float:
        return self.step_s + self.layer_s * layers

    def seconds(self, layers: int, flops: float) -> float:
        return self.overhead_s(layers) + self.seconds_per_flop * flops

    @property
    def utilisation(self) -> float | None:
        """The fitted rate as a share of the peak (None without a rate or a peak)."""
        if not self.seconds_per_flop or not self.peak_flops:
            return None
        return 1.0 / (self.seconds_per_flop * self.peak_flops)

    @property
    def is_cpu(self) -> bool:
        return self.device.lower().startswith("cpu")

    def formula(self) -> str:
        rate = (
            f"FLOPs at {1 / self.seconds_per_flop / 1e12:.3g} TFLOP/s"
            + (f" ({self.utilisation:.1%} of {self.peak_flops / 1e12:.4g} TFLOPS)" if self.utilisation else "")
            if self.seconds_per_flop
            else "no rate fitted (the arithmetic hid behind the fixed costs)"
        )
        return f"{self.step_s * 1e3:.4g} ms per step + {self.layer_s * 1e3:.4g} ms per layer; {rate}"

    def describe(self) -> str:
        models = ", ".join(f"{name} ({layers} layers)" for name, layers in sorted(self.models.items()))
        return (
            f"{self.device}, {self.date[:10]}: {self.formula()}; rms relative error {self.rms_rel_error:.1%} over "
            f"{self.points} steps of {models}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> StepCostFit:
        try:
            fit = cls(**data)
        except TypeError as exc:
            raise ProfilingError(f"{where}: not a step-cost fit ({exc}); re-run `arcsub profile fit`") from None
        numbers = (fit.step_s, fit.layer_s, fit.seconds_per_flop, fit.rms_rel_error)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in numbers):
            raise ProfilingError(f"{where}: {fit.device}: coefficients must be non-negative numbers")
        return fit


# ---------------------------------------------------------------- the fit


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(vector)
    a = [row[:] + [v] for row, v in zip(matrix, vector)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]


def _least_squares(columns: list[list[float]], target: list[float]) -> list[float] | None:
    """argmin ‖A·x − b‖ by the normal equations on columns scaled to unit size."""
    scales = [max(abs(v) for v in col) or 1.0 for col in columns]
    scaled = [[v / s for v in col] for col, s in zip(columns, scales)]
    gram = [[sum(x * y for x, y in zip(a, b)) for b in scaled] for a in scaled]
    rhs = [sum(x * y for x, y in zip(a, target)) for a in scaled]
    solution = _solve(gram, rhs)
    return None if solution is None else [x / s for x, s in zip(solution, scales)]


def fit_step_costs(
    points: Sequence[StepPoint],
    *,
    device: str,
    date: str | None = None,
    peak_flops: float | None = None,
    sources: Sequence[str] = (),
) -> StepCostFit:
    """The best non-negative fit of ``points`` (see the module docstring)."""
    if not points:
        raise ProfilingError(f"{device}: no measured step to fit")
    if any(not p.seconds > 0 for p in points):
        raise ProfilingError(f"{device}: cannot fit non-positive step times")
    best: tuple[float, int, tuple[str, ...], list[float]] | None = None
    depths = {p.layers for p in points}
    for size in range(1, len(TERMS) + 1):
        for subset in itertools.combinations(TERMS, size):
            if "step" in subset and "layer" in subset and len(depths) < 2:
                continue  # one depth: a constant per step and one per layer are the same thing
            columns = [[p.column(t) / p.seconds for p in points] for t in subset]
            coef = _least_squares(columns, [1.0] * len(points))
            if coef is None or any(c < -1e-15 or not math.isfinite(c) for c in coef):
                continue
            coef = [max(0.0, c) for c in coef]
            values = dict(zip(subset, coef))
            if peak_flops and values.get("flop") and 1.0 / values["flop"] > peak_flops:
                continue  # faster than the device's peak: not a physical rate
            residuals = [sum(c * col[i] for c, col in zip(coef, columns)) - 1.0 for i in range(len(points))]
            error = math.sqrt(sum(r * r for r in residuals) / len(points))
            if best is None or error < best[0] - 1e-12:
                best = (error, size, subset, coef)
    if best is None:
        raise ProfilingError(f"{device}: no non-negative fit of the step times")
    error, _, subset, coef = best
    values = dict(zip(subset, coef))
    models = {p.model: p.layers for p in points}
    notes = []
    if len(depths) < 2:
        notes.append("one depth measured: the per-layer and per-step overheads cannot be told apart")
    elif len(depths) == 2:
        notes.append("two depths measured: the split between per-step and per-layer overhead rests on two models only")
    if not values.get("flop"):
        notes.append(
            "no rate fitted: within the measured lengths the step time did not grow with the arithmetic as a "
            "physical rate would (on a GPU the kernels run while Python launches the next ones)"
        )
    return StepCostFit(
        device=device,
        date=date or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        step_s=values.get("step", 0.0),
        layer_s=values.get("layer", 0.0),
        seconds_per_flop=values.get("flop", 0.0),
        peak_flops=peak_flops,
        rms_rel_error=error,
        points=len(points),
        models=models,
        sources=list(sources),
        notes=notes,
    )


# ---------------------------------------------------------------- measured points


def _registered_config(label: str) -> dict | None:
    for candidate in CANDIDATES:
        if candidate.name == label:
            return dict(candidate.config)
    return None


def points_from_profile(data: dict, where: str) -> tuple[str, str, list[StepPoint]]:
    """(device, date, points) of a ``profile.json``: one point per measured length."""
    model = data.get("model") or {}
    label = str(model.get("label", "?"))
    cfg = model.get("config") or _registered_config(label)
    settings = data.get("settings") or {}
    arithmetic = step_arithmetic(cfg, int(settings.get("lora_rank") or 32)) if cfg else None
    if arithmetic is None:
        raise ProfilingError(
            f"{where}: {label}: its config is neither in the file nor a registered candidate's; "
            "re-measure it with this arcsub (profile.json now keeps the config)"
        )
    answer = int((settings.get("grid") or {}).get("train_answer") or 128)
    points = [
        StepPoint(label, arithmetic.layers, arithmetic.flops([r["tokens"]], min(answer, r["tokens"] - 1)),
                  float(r["median_s"]), int(r["tokens"]))
        for r in (data.get("measured") or {}).get("train", [])
        if "median_s" in r
    ]  # fmt: skip
    machine = data.get("machine") or {}
    return str(machine.get("device_name", "?")), str(machine.get("date", "")), points


def points_from_bench(data: dict, where: str) -> tuple[str, str, list[StepPoint], float | None]:
    """(device, date, points, peak) of ``bench/ttft_throughput.py``'s JSON: its baseline
    rows (one sequence per step, no lever), the setting ``measure`` also times."""
    points = [
        StepPoint(r["model"], int(r["layers"]), float(r["flops"]), float(r["median_s"]), int(r["tokens_per_step"]))
        for r in data.get("rows", [])
        if r.get("variant") == "baseline" and r.get("median_s")
    ]
    machine = data.get("machine") or {}
    return str(machine.get("device_name", "?")), str(machine.get("date", "")), points, data.get("peak_flops")


def fit_measured(paths: Sequence[str | os.PathLike], *, peak_flops: float | None = None) -> StepCostFit:
    """The fit over ``profile.json`` files and bench JSON files, all from one device."""
    if not paths:
        raise ProfilingError("arcsub profile fit: give profile.json files (or bench/ttft_throughput.py JSON)")
    devices: dict[str, list[str]] = {}
    dates, points, peaks = [], [], []
    for path in paths:
        path = Path(path)
        data = read_json(path, ProfilingError, missing="file not found; pass profile.json files from `arcsub profile measure`",
                         fix="pass profile.json files or bench/ttft_throughput.py's JSON")  # fmt: skip
        kind = data.get("format") if isinstance(data, dict) else None
        if kind == BENCH_FORMAT:
            device, date, found, peak = points_from_bench(data, str(path))
            peaks.append(peak)
        elif kind == PROFILE_FORMAT:
            device, date, found = points_from_profile(check_profile_json(data, path), str(path))
        else:
            raise ProfilingError(
                f"{path}: neither a profile.json (`arcsub profile measure`) nor bench/ttft_throughput.py's JSON"
            )
        if not found:
            raise ProfilingError(f"{path}: no measured training step in it")
        devices.setdefault(device, []).append(path.name)
        dates.append(date)
        points += found
    if len(devices) > 1:
        listed = "; ".join(f"{d}: {', '.join(files)}" for d, files in devices.items())
        raise ProfilingError(f"measurements from several devices ({listed}); fit one device at a time")
    device = next(iter(devices))
    peak = peak_flops or next((p for p in peaks if p), None) or datasheet_peak(device)
    return fit_step_costs(points, device=device, date=max(dates), peak_flops=peak, sources=[str(p) for p in paths])


# ---------------------------------------------------------------- recorded fits


def recorded_fits(path: str | os.PathLike | None = None) -> list[StepCostFit]:
    """The fits in ``path`` (default: the ones shipped with arcsub, ``step_fits.json``)."""
    path = Path(path) if path is not None else RECORDED
    if path == RECORDED and not path.exists():
        return []
    data = read_json(
        path,
        ProfilingError,
        missing=f"step-fit file not found; write one with `arcsub profile fit ... -o {path}`",
        fix="write it with `arcsub profile fit`",
    )
    if not isinstance(data, dict) or data.get("format") != FITS_FORMAT or not isinstance(data.get("fits"), list):
        raise ProfilingError(
            f'{path}: not a step-fit file (no "format": "{FITS_FORMAT}"); write it with `arcsub profile fit`'
        )
    return [StepCostFit.from_dict(f, f"{path}: fits[{i}]") for i, f in enumerate(data["fits"])]


def write_fits(fits: Sequence[StepCostFit], path: str | os.PathLike) -> Path:
    write_json_atomic(path, {"format": FITS_FORMAT, "version": 1, "fits": [f.to_dict() for f in fits]}, indent=1)
    return Path(path)


def record_fit(fit: StepCostFit, path: str | os.PathLike | None = None) -> Path:
    """Add ``fit`` to a fit file (default: the shipped one), replacing that device's."""
    path = Path(path) if path is not None else RECORDED
    kept = [f for f in (recorded_fits(path) if path.exists() else []) if f.device != fit.device]
    return write_fits(kept + [fit], path)
