"""Helpers shared by the command modules."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from ..console import engine_output_to, say, show_arcsub_lines
from ..errors import ArcsubError

SOURCE_HELP = "challenges/task JSON, folder, or dataset (arc1/evaluation[:10])"
LOG_FILE = Path("logs") / "run.log"

# The settings library errors name (`name`, see arcsub.errors), per command, as the flags
# that set them; a setting not listed stays as the library named it.
_SIMULATE_FLAGS = {
    "data": "--data", "challenges": "--challenges", "solutions": "--solutions", "smallest": "--smallest",
    "kernel": "--kernel", "wheels": "--wheels", "bundle": "--bundle", "out": "--out", "budget_s": "--budget",
    "ram_gb": "--ram-gb", "disk_gb": "--disk-gb", "workers": "--workers", "kill_worker_after_s": "--kill-worker-after",
    "fail_task": "--fail-task", "nan_loss": "--nan-loss", "fail_engine": "--fail-engine", "stall_task": "--stall-task",
}  # fmt: skip
_EVALUATE_FLAGS = {
    "data": "--data", "solutions": "--solutions", "smallest": "--smallest", "skip_smallest": "--skip-smallest",
    "out": "--out", "restart": "--restart", "workers": "--workers", "per_task_s": "--budget-per-task",
    "budget_competition": "--profile", "competition": "--machine",
}  # fmt: skip
_PROFILE_FLAGS = {
    "tokens_per_step": "--tokens-per-step", "train_share": "--train-share", "tasks": "--tasks",
    "prompt_tokens": "--prompt-tokens", "answer_tokens": "--answer-tokens", "backend": "--backend",
    "precision": "--precision", "device": "--device", "measure": "--measure",
}  # fmt: skip
_MODEL_FLAGS = {
    "max_len": "--max-len", "rope_theta": "--rope-theta", "scaling": "--rope-scaling", "factor": "--factor",
    "template": "--template", "replace": "--replace", "lengths": "--lengths", "samples": "--samples",
    "finetune_steps": "--finetune-steps", "compare_rope_theta": "--compare-rope-theta", "max_tokens": "--max-tokens",
    "method": "--method",
}  # fmt: skip
# Settings whose flag is the same in every command that has it.
COMMON_FLAGS = {
    "skip_invalid": "--skip-invalid", "allow_overlap": "--allow-overlap", "out": "--out", "resume": "--resume",
    "overwrite": "--overwrite", "challenges": "--challenges", "tokenizer": "--tokenizer",
}  # fmt: skip
SETTING_FLAGS: dict[str, dict[str, str]] = {
    "simulate": _SIMULATE_FLAGS,
    "bundle": {"bundle": "--build", "budget_s": "--budget", "over_image": "--over-image"},
    "evaluate": _EVALUATE_FLAGS,
    "profile": _PROFILE_FLAGS,
    "model": _MODEL_FLAGS,
    "compare": {"resamples": "--resamples"},
}
SETTING = re.compile(r"`([A-Za-z_]\w*)`")


def user_message(error: ArcsubError, command: str | None) -> str:
    """The error's message with each setting it names shown as ``command``'s flag."""
    flags = COMMON_FLAGS | SETTING_FLAGS.get(command or "", {})
    return SETTING.sub(lambda m: flags.get(m[1], m[0]), str(error))


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
