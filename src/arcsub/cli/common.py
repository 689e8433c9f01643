"""Helpers shared by the command modules."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from ..console import engine_output_to, say, show_arcsub_lines
from ..errors import ArcsubError

SOURCE_HELP = "challenges/task JSON, folder, or dataset (arc1/evaluation[:10])"
LOG_FILE = Path("logs") / "run.log"


def add_verbose_option(parser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help=f"engine logs on the screen instead of OUT/{LOG_FILE.as_posix()}"
    )


def command_output(out_dir: str | Path, verbose: bool) -> AbstractContextManager:
    """arcsub's lines and bars on the screen; engine output (vLLM, transformers,
    warnings, child processes) into ``OUT/logs/run.log``, or on the screen too with
    ``--verbose`` (with arcsub's debug lines)."""
    show_arcsub_lines(debug=verbose)
    if verbose:
        return nullcontext()
    path = Path(out_dir) / LOG_FILE
    say(f"engine logs: {path}")
    return engine_output_to(path)


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
