"""Helpers shared by the command modules."""

from __future__ import annotations

import sys

from ..errors import ArcsubError

SOURCE_HELP = "challenges/task JSON, folder, or dataset (arc1/evaluation[:10])"


def stderr(message: str) -> None:
    print(message, file=sys.stderr)


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
