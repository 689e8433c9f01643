"""Helpers shared by the command modules."""

from __future__ import annotations

import logging
import sys

from ..errors import ArcsubError

SOURCE_HELP = "challenges/task JSON, folder, or dataset (arc1/evaluation[:10])"


def stderr(message: str) -> None:
    print(message, file=sys.stderr)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time, not the one seen at set-up.

    A handler bound to the stream of its first call writes into a closed file once
    that stream is replaced (pytest's capture, a notebook cell) and logs an error.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def log_to_stderr() -> None:
    """Show arcsub's INFO log lines (training progress) on stderr, once."""
    logger = logging.getLogger("arcsub")
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def one_task(source: str, task_id: str | None):
    """The single task a source names (or ``task_id`` among several)."""
    from ..tasks import load_tasks

    tasks = load_tasks(source).tasks
    if task_id is not None:
        matches = [t for t in tasks if t.id == task_id]
        if not matches:
            raise ArcsubError(f"{source}: no task {task_id}")
        return matches[0]
    if len(tasks) != 1:
        raise ArcsubError(f"{source}: holds {len(tasks)} tasks; pick one with --task ID or a [id] selector")
    return tasks[0]
