"""Task results and the one ``submission.json`` they merge into.

Every task starts with the rule-based fallback attempts; a worker's result replaces
them as it arrives, and the whole file is rewritten atomically each time, so the file
on disk is complete and valid at every moment. Each result is also kept as
``results/<task>.json`` (atomic), which is what a restarted kernel resumes from. When
the disk is full the file on disk stays the last one written, still valid, and the
results are kept in memory for the next write that succeeds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..inference import RunStore, select_attempts
from ..io import write_json_atomic
from ..submission import make_submission, validate_submission, write_submission
from ..tasks import Task

log = logging.getLogger("arcsub.kernel")


def results_dir(working: Path) -> Path:
    """The folder of per-task result files under the kernel's working folder: what a
    restarted kernel resumes from, and what ``arcsub evaluate`` and the benches read."""
    return Path(working) / "arcsub" / "results"


def task_entry(attempts: list[dict[str, Any]], task: Task) -> list[str]:
    """Problems with one task's attempts (empty when they are valid)."""
    return validate_submission({task.id: attempts}, [task])


class SubmissionBook:
    def __init__(self, tasks: Sequence[Task], submission_path: Path, results_dir: Path):
        self.tasks = {t.id: t for t in tasks}
        self.path = Path(submission_path)
        self.results_dir = Path(results_dir)
        self.entries: dict[str, list[dict[str, Any]]] = {}
        self.sources: dict[str, str] = {}  # task id -> where its attempts came from
        self.unsaved = False

    def write_fallback(self) -> None:
        """Rule-based attempts for every task (an empty result store: baseline only)."""
        selection = select_attempts(list(self.tasks.values()), RunStore(self.results_dir / ".none"))
        self.entries = make_submission(selection.attempts)
        self.sources = {tid: "fallback" for tid in self.tasks}
        self._write()

    def resume(self) -> list[str]:
        """Take the results a previous run of the kernel left; returns their task ids."""
        found = []
        for path in sorted(self.results_dir.glob("*.json")):
            try:
                result = json.loads(path.read_text())
                task = self.tasks.get(result["task"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s: unreadable result file, the task runs again", path)
                continue
            if task is not None and not task_entry(result["attempts"], task):
                self.entries[task.id] = result["attempts"]
                self.sources[task.id] = result.get("source", "model")
                found.append(task.id)
        if found:
            self._write()
        return found

    def add(self, task_id: str, attempts: list[dict[str, Any]], source: str) -> bool:
        """Merge one task's attempts (checked first: a bad result keeps the fallback)."""
        problems = task_entry(attempts, self.tasks[task_id])
        if problems:
            log.warning("%s: result rejected, the fallback stays (%s)", task_id, problems[0])
            return False
        self.entries[task_id] = attempts
        self.sources[task_id] = source
        self._write()
        return True

    def _write(self) -> None:
        try:
            write_submission(self.path, self.entries)
            self.unsaved = False
        except OSError as exc:  # full disk: the previous file stays, valid
            self.unsaved = True
            log.warning("%s: not rewritten (%s); the previous version stays valid", self.path, exc)


def save_result(results_dir: Path, task_id: str, attempts: list, source: str, stats: dict[str, Any]) -> bool:
    """A task's result file (atomic); False when it could not be written."""
    try:
        write_json_atomic(
            results_dir / f"{task_id}.json",
            {"task": task_id, "attempts": attempts, "source": source, "stats": stats},
        )
        return True
    except OSError as exc:
        log.warning("%s: result file not written (%s)", task_id, exc)
        return False
