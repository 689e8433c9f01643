"""An evaluation on disk (``evaluation.json``, ``evaluation.md``) and on the screen."""

from __future__ import annotations

from pathlib import Path

from ..io import write_json_atomic, write_text_atomic

TASK_COLUMNS = (
    ("task", None),
    ("score", "score"),
    ("vote_1", "vote_1"),
    ("vote_2", "vote_2"),
    ("pass_n", "pass_n"),
    ("accuracy", "accuracy"),
    ("correct size", "correct_size"),
    ("unanswered", "unanswered"),
    ("predictions", "predictions"),
    ("TTFT steps", "ttft_steps"),
    ("train s", "train_s"),
    ("infer s", "infer_s"),
    ("task s", "seconds"),
    ("attempts from", "source"),
)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value <= 1 else f"{value:.1f}"
    return str(value)


def markdown(evaluation: dict) -> str:
    model, data, budget, total = (evaluation[k] for k in ("model", "data", "budget", "overall"))
    params = f"{model['parameters'] / 1e6:.0f}M parameters" if model.get("parameters") else "parameters unknown"
    lines = [
        f"# Evaluation: {model['name']} on {data['source']}",
        "",
        f"- model: `{model['path']}` ({params}, context window {model.get('context_window') or 'unknown'})",
        (
            f"- tasks: {data['tasks']} ({data['test_outputs']} test outputs); budget {budget['per_task_s']:g} s per task "
            f"({budget['from']}); {budget['machine']}, {budget['workers']} worker(s)"
        ),
        f"- evaluated {evaluation['evaluated_at']} with arcsub {evaluation['arcsub_version']}",
        "",
        (
            "| score | solved | vote_1 | vote_2 | pass_n | accuracy | correct size | unanswered | TTFT steps/task "
            "| predictions/task | s/task | tasks by model |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        (
            f"| {total['score']:.3f} | {total['solved']}/{total['test_outputs']} | {total['vote_1']:.3f} "
            f"| {total['vote_2']:.3f} | {total['pass_n']:.3f} | {total['accuracy']:.3f} | {total['correct_size']:.3f} "
            f"| {total['unanswered']:.3f} | {total['ttft_steps_per_task']:g} | {total['predictions_per_task']:g} "
            f"| {total['seconds_per_task']:g} | {total['tasks_by_model']}/{data['tasks']} |"
        ),
        "",
        "| " + " | ".join(name for name, _ in TASK_COLUMNS) + " |",
        "|" + "---|" * len(TASK_COLUMNS),
    ]
    for task_id, entry in sorted(evaluation["tasks"].items()):
        cells = [task_id] + [_cell(entry[key]) for _, key in TASK_COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_lines(evaluation: dict, out: Path) -> list[str]:
    total, data = evaluation["overall"], evaluation["data"]
    stages = total["stage_seconds"]
    lines = [
        (
            f"score {total['score']:.3f} ({total['solved']}/{total['test_outputs']} test outputs); vote_1 "
            f"{total['vote_1']:.3f}, vote_2 {total['vote_2']:.3f}, pass_n {total['pass_n']:.3f}, accuracy "
            f"{total['accuracy']:.3f}, correct size {total['correct_size']:.3f}, unanswered {total['unanswered']:.3f}"
        ),
        (
            f"per task: {total['ttft_steps_per_task']:g} TTFT steps, {total['predictions_per_task']:g} predictions, "
            f"{total['seconds_per_task']:g} s (of {evaluation['budget']['per_task_s']:g}); fine-tuning "
            f"{stages['finetune']:.0f} s, inference {stages['inference']:.0f} s in all"
        ),
        f"tasks by the model: {total['tasks_by_model']}/{data['tasks']}, {total.get('tasks_scored', 0)} of them "
        "chosen after scoring (step 2)"
        + (f"; {total['tasks_unfinished']} unfinished (scored on the fallback)" if total["tasks_unfinished"] else ""),
        f"wrote {out / 'evaluation.json'} and {out / 'evaluation.md'}",
    ]
    return lines


def write_evaluation(evaluation: dict, out: Path) -> list[str]:
    """Both files (atomically); returns the lines for the screen."""
    write_json_atomic(out / "evaluation.json", evaluation, indent=1)
    write_text_atomic(out / "evaluation.md", markdown(evaluation))
    return summary_lines(evaluation, out)
