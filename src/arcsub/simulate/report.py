"""Judging a finished run: the submission on disk, the kernel's own report, the verdict.

A run passes when ``submission.json`` is valid for every task, every test input and
both attempts, the kernel was not killed at a limit, and it exited with code 0. Kaggle
judges the two kinds of run alike on that, for different reasons: in a scoring rerun a
kernel that times out, runs out of memory or exits non-zero ("Notebook Threw
Exception") scores nothing, even with a valid file on disk; a placeholder run (the
first run after a push, "Save version") that exits non-zero is a failed version, which
cannot be submitted. The file is still validated and scored after a kill, so a
deadline run shows what its fallback would have been worth.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SubmissionError
from ..submission import load_submission, score_submission, validate_submission
from ..tasks import Task
from .runner import RunRecord

SHOWN_PROBLEMS = 10


def judge_submission(path: Path, tasks: list[Task]) -> dict:
    """Validity (every problem named) and, when valid and solutions are known, the score."""
    verdict: dict = {"path": str(path), "present": path.is_file(), "valid": False, "problems": [], "score": None}
    if not verdict["present"]:
        verdict["problems"] = [f"{path.name}: missing from the working folder (the kernel wrote none)"]
        return verdict
    try:
        submission = load_submission(path)
    except SubmissionError as exc:
        verdict["problems"] = [str(exc)]
        return verdict
    verdict["problems"] = validate_submission(submission, tasks)
    verdict["valid"] = not verdict["problems"]
    if verdict["valid"] and all(task.has_solutions for task in tasks):
        score = score_submission(submission, tasks)
        verdict["score"] = {
            "score": score.score,
            "solved": score.solved,
            "total": score.total,
            "solved_tasks": score.solved_tasks,
        }
    return verdict


def read_kernel_report(path: Path) -> dict | None:
    """The kernel's ``report.json`` when it wrote one (a JSON object), else None."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def failures(record: RunRecord, submission: dict, *, placeholder: bool = False) -> list[str]:
    """Why the run would fail on Kaggle (empty: it passes)."""
    consequence = (
        "the version fails on Kaggle and cannot be submitted"
        if placeholder
        else "Kaggle reports Notebook Threw Exception and scores nothing"
    )
    reasons = []
    if not submission["valid"]:
        count = len(submission["problems"])
        reasons.append(
            "no submission.json" if not submission["present"] else f"submission invalid ({count} problem(s))"
        )
    if record.killed:
        reasons.append(f"killed at {record.killed['by']}: {record.killed['detail']}")
    elif record.exit_code != 0:
        reasons.append(f"the kernel exited with code {record.exit_code}: {consequence}")
    reasons.extend(record.problems)
    return reasons


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def final_lines(report: dict) -> list[str]:
    """What the simulator prints at the end."""
    sub, limits, run = report["submission"], report["limits"], report["run"]
    lines = []  # the kernel's own summary was passed through with its output (and is in simulation.json)
    if sub["valid"]:
        tests = report["tasks"]["test_inputs"]
        lines.append(f"submission: valid ({report['tasks']['count']} tasks, {tests} test inputs, 2 attempts each)")
    else:
        lines.append(f"submission: INVALID, {len(sub['problems'])} problem(s):")
        lines += [f"  {p}" for p in sub["problems"][:SHOWN_PROBLEMS]]
        if len(sub["problems"]) > SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(sub['problems']) - SHOWN_PROBLEMS} more (see the report)")
    score = sub["score"]
    if score:
        lines.append(f"score: {score['solved']}/{score['total']} test outputs solved ({score['score']:.3f})")
    else:
        lines.append("score: not scored" + ("" if sub["valid"] else " (invalid submission)"))
    budget = limits["budget_s"]
    lines.append(
        f"budget: {run['elapsed_s']:.1f} s of {budget:g} s ({run['elapsed_s'] / budget:.0%}); "
        f"peak RAM {_size(run['peak_ram_bytes'])} of {_size(limits['ram_bytes'])}; "
        f"working disk {_size(run['disk_used_bytes'])} of {_size(limits['disk_bytes'])}"
    )
    if run.get("left_running"):
        names = run["left_running"]
        lines.append(
            f"left running when the kernel's main process ended (killed, as Kaggle ends the session): "
            f"{len(names)} process(es): {', '.join(sorted(set(names)))}"
        )
    if report["passed"]:
        lines.append("verdict: passed")
    else:
        lines.append("verdict: FAILED: " + "; ".join(report["failures"]))
    lines.append(f"report: {report['report_path']}")
    return lines
