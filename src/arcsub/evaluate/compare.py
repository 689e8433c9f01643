"""Evaluations side by side (``arcsub compare``): a table, and paired statistics that
say whether the leader really leads.

Which pair is tested: the best two by Kaggle score on the tasks every evaluation
shares (ties keep the order given). With more than two evaluations the question a
table cannot answer by eye is "is the best one really better than the next?"; every
other gap is at least as large. The pair is compared task by task (the same tasks,
so their difficulty cancels): the mean per-task score difference, a seeded paired
bootstrap over tasks (95% interval, share of resamples where the leader stays
ahead), and an exact two-sided sign test over the tasks where the two differ.

The table shows each evaluation's own totals (as ``arcsub evaluate`` wrote them);
when the task sets differ, a ``shared`` column adds the Kaggle score on the tasks all
of them share, which is what ranks them and what the statistics use.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..io import read_json
from .budget import EvaluationError

EVALUATION_FILE = "evaluation.json"
EVALUATION_KIND = "arcsub-evaluation"
EVALUATION_VERSION = 1
COMPARISON_KIND = "arcsub-comparison"
COMPARISON_VERSION = 1
DEFAULT_SEED = 0
DEFAULT_RESAMPLES = 10_000
SIGNIFICANCE = 0.05
# Means of per-task scores such as 1/3 carry rounding noise: a gap this small is a tie.
AHEAD_TOLERANCE = 1e-12
REWRITE_HINT = "re-run `arcsub evaluate` to rewrite it"


class EvaluationFileError(EvaluationError):
    """An evaluation.json cannot be read: missing, not JSON, another kind or version,
    or a field missing or of the wrong type."""


# --------------------------------------------------------------------------- reading


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_optional_int(value) -> bool:
    return value is None or _is_int(value)


def _is_str(value) -> bool:
    return isinstance(value, str)


CHECKS = {
    _is_number: "a number",
    _is_int: "a whole number",
    _is_optional_int: "a whole number or null",
    _is_str: "a string",
}
# The fields compare reads (others may come and go without breaking it).
OVERALL_METRICS = (
    "score",
    "vote_1",
    "vote_2",
    "pass_n",
    "accuracy",
    "correct_size",
    "unanswered",
    "ttft_steps_per_task",
    "predictions_per_task",
    "seconds_per_task",
)
REQUIRED = {
    "model": {"name": _is_str, "parameters": _is_optional_int, "context_window": _is_optional_int},
    "data": {"source": _is_str, "tasks": _is_int},
    "budget": {"per_task_s": _is_number, "machine": _is_str},
    "overall": {name: _is_number for name in OVERALL_METRICS},
}
TASK_FIELDS = {"score": _is_number, "solved": _is_int, "test_outputs": _is_int}


@dataclass(frozen=True)
class Evaluation:
    """One evaluation.json and where it came from."""

    path: Path
    record: dict

    @property
    def tasks(self) -> dict[str, dict]:
        return self.record["tasks"]


def load_evaluation(path: str | os.PathLike) -> Evaluation:
    """Read and check an ``evaluation.json`` (or the folder ``arcsub evaluate`` wrote it in)."""
    path = Path(path)
    if path.is_dir():
        if not (path / EVALUATION_FILE).is_file():
            raise EvaluationFileError(
                f"{path}: no {EVALUATION_FILE} in this folder; pass the --out folder of `arcsub evaluate` "
                f"or its {EVALUATION_FILE}"
            )
        path = path / EVALUATION_FILE
    record = read_json(
        path,
        EvaluationFileError,
        missing="no such file; run `arcsub evaluate ... --out FOLDER` and pass FOLDER",
        fix=REWRITE_HINT,
    )
    _check_record(record, path)
    return Evaluation(path, record)


def _check_record(record, path: Path) -> None:
    kind = record.get("kind") if isinstance(record, dict) else None
    if kind != EVALUATION_KIND:
        raise EvaluationFileError(
            f"{path}: not an arcsub evaluation (kind {kind!r}, expected {EVALUATION_KIND!r}); "
            "pass an evaluation.json written by `arcsub evaluate`"
        )
    version = record.get("version")
    if version != EVALUATION_VERSION:
        fix = "upgrade arcsub" if _is_int(version) and version > EVALUATION_VERSION else REWRITE_HINT
        raise EvaluationFileError(
            f"{path}: evaluation version {version!r}, this arcsub reads version {EVALUATION_VERSION}; {fix}"
        )
    for section, fields in REQUIRED.items():
        _check_fields(record.get(section), fields, section, path)
    tasks = record.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise EvaluationFileError(f"{path}: field 'tasks' is missing or holds no task; {REWRITE_HINT}")
    for task_id, entry in tasks.items():
        _check_fields(entry, TASK_FIELDS, f"tasks.{task_id}", path)


def _check_fields(section, fields: dict, where: str, path: Path) -> None:
    if not isinstance(section, dict):
        raise EvaluationFileError(f"{path}: field '{where}' is missing or not an object; {REWRITE_HINT}")
    for name, check in fields.items():
        if name not in section:
            raise EvaluationFileError(f"{path}: missing field '{where}.{name}'; {REWRITE_HINT}")
        if not check(section[name]):
            raise EvaluationFileError(
                f"{path}: field '{where}.{name}' should be {CHECKS[check]}, not {section[name]!r}; {REWRITE_HINT}"
            )


# --------------------------------------------------------------------------- statistics


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: how likely a split at least this lopsided is when
    each differing task is a fair coin. Ties (tasks scored alike) carry no sign."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def bootstrap_means(differences: list[float], *, seed: int, resamples: int, chunk: int = 1000):
    """Means of ``resamples`` resamples of the tasks (with replacement), drawn in
    chunks so 400 tasks x 10,000 resamples never sit in memory at once."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = np.asarray(differences, dtype=float)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[picks].mean(axis=1)
    return means


@dataclass(frozen=True)
class PairStats:
    """The leader ``a`` against ``b`` over the tasks they share; differences are a - b."""

    a: str
    b: str
    tasks: int
    mean_difference: float
    ci_low: float
    ci_high: float
    a_ahead_share: float  # share of bootstrap resamples where a's mean is higher
    a_wins: int  # tasks where a scored higher
    b_wins: int
    sign_test_p: float
    resamples: int
    seed: int

    @property
    def significant(self) -> bool | None:
        """True when both tests reject "no difference" at 5%, False when neither does,
        None when they disagree."""
        by_sign = self.sign_test_p < SIGNIFICANCE
        by_interval = self.ci_low > 0 or self.ci_high < 0
        return by_sign if by_sign == by_interval else None


def paired_statistics(
    a_scores: list[float],
    b_scores: list[float],
    *,
    a: str = "A",
    b: str = "B",
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> PairStats:
    """``a`` against ``b`` task by task (the lists are aligned: one entry per shared task)."""
    import numpy as np

    if len(a_scores) != len(b_scores) or not a_scores:
        raise ValueError("paired scores need the same, non-zero number of tasks")
    if resamples < 1:
        raise EvaluationError(f"`resamples` {resamples}: expected at least 1 (10000 gives a stable 95% interval)")
    differences = [x - y for x, y in zip(a_scores, b_scores, strict=True)]
    means = bootstrap_means(differences, seed=seed, resamples=resamples)
    low, high = np.percentile(means, [2.5, 97.5])
    wins = sum(d > 0 for d in differences)
    losses = sum(d < 0 for d in differences)
    return PairStats(
        a=a,
        b=b,
        tasks=len(differences),
        mean_difference=math.fsum(differences) / len(differences),
        ci_low=float(low),
        ci_high=float(high),
        a_ahead_share=float(np.mean(means > AHEAD_TOLERANCE)),
        a_wins=wins,
        b_wins=losses,
        sign_test_p=sign_test_p(wins, losses),
        resamples=resamples,
        seed=seed,
    )


# --------------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    rows: list[dict]  # one per evaluation, best shared score first
    shared_tasks: list[str]
    task_sets_differ: bool
    warnings: list[str] = field(default_factory=list)
    pair: PairStats | None = None
    verdict: str = ""


def _labels(evaluations: list[Evaluation]) -> list[str]:
    """Model names (a folder's last part), made unique with the result folder (the same
    model is often compared with itself under other settings), else with the position."""
    names = [Path(e.record["model"]["name"]).name or e.record["model"]["name"] for e in evaluations]
    labels = [
        name if names.count(name) == 1 else f"{name}@{e.path.parent.name}"
        for name, e in zip(names, evaluations, strict=True)
    ]
    return [label if labels.count(label) == 1 else f"{label}#{i + 1}" for i, label in enumerate(labels)]


def _shared_tasks(evaluations: list[Evaluation], labels: list[str]) -> list[str]:
    for i, first in enumerate(evaluations):
        for j in range(i + 1, len(evaluations)):
            if not first.tasks.keys() & evaluations[j].tasks.keys():
                raise EvaluationError(
                    f"{first.path} ({labels[i]}) and {evaluations[j].path} ({labels[j]}) share no task: "
                    "nothing to compare; evaluate them on the same data"
                )
    shared = set.intersection(*(set(e.tasks) for e in evaluations))
    if not shared:
        raise EvaluationError(
            "no task is common to all the evaluations given (each pair shares some): compare fewer at a time"
        )
    return sorted(shared)


def _kaggle_score(evaluation: Evaluation, task_ids: list[str]) -> float:
    """Solved test outputs over test outputs, on ``task_ids`` alone."""
    entries = [evaluation.tasks[t] for t in task_ids]
    outputs = sum(e["test_outputs"] for e in entries)
    return sum(e["solved"] for e in entries) / outputs if outputs else 0.0


def _row(evaluation: Evaluation, label: str, shared: list[str]) -> dict[str, Any]:
    record = evaluation.record
    model, data, budget, total = (record[k] for k in ("model", "data", "budget", "overall"))
    return {
        "label": label,
        "path": str(evaluation.path),
        "model": model["name"],
        "parameters": model["parameters"],
        "context_window": model["context_window"],
        **{name: total[name] for name in OVERALL_METRICS},
        "shared_score": round(_kaggle_score(evaluation, shared), 4),
        "budget_per_task_s": budget["per_task_s"],
        "machine": budget["machine"],
        "data_source": data["source"],
        "tasks": len(evaluation.tasks),
    }


def _differing(rows: list[dict], key: str, unit: str = "") -> str | None:
    """``"A x, B y"`` when the rows disagree on ``key``, else None."""
    values = [r[key] for r in rows]
    if all(_same(v, values[0]) for v in values):
        return None
    return ", ".join(f"{r['label']} {_plain(r[key])}{unit}" for r in rows)


def _same(x, y) -> bool:
    if _is_number(x) and _is_number(y):
        return math.isclose(x, y, rel_tol=1e-6)
    return x == y


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _warnings(evaluations: list[Evaluation], rows: list[dict], task_sets_differ: bool, shared: int) -> list[str]:
    warnings = []
    if task_sets_differ:
        sizes = ", ".join(f"{r['label']} {r['tasks']}" for r in rows)
        warnings.append(f"task sets differ ({sizes} tasks): ranked and tested on the {shared} tasks all share")
    if sources := _differing(rows, "data_source"):
        warnings.append(f"data sources differ: {sources}")
    if budgets := _differing(rows, "budget_per_task_s", " s"):
        warnings.append(f"per-task budgets differ ({budgets}): NOT a comparison at equal budget")
    if machines := _differing(rows, "machine"):
        warnings.append(f"machines differ ({machines}): the same seconds buy different work")
    for evaluation, row in zip(evaluations, rows, strict=True):
        leakage = evaluation.record.get("leakage") or {}
        if leakage.get("overlap"):
            warnings.append(
                f"{row['label']}: its model was trained on {leakage['overlap']} of the evaluated tasks (leakage)"
            )
    return warnings


def compare_evaluations(
    evaluations: list[Evaluation | str | os.PathLike],
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """The table rows, the warnings, and the best two tested against each other."""
    if not evaluations:
        raise EvaluationError("no evaluation to compare: pass evaluation.json files or `arcsub evaluate` folders")
    loaded = [e if isinstance(e, Evaluation) else load_evaluation(e) for e in evaluations]
    labels = _labels(loaded)
    shared = _shared_tasks(loaded, labels)
    task_sets_differ = any(len(e.tasks) != len(shared) for e in loaded)
    rows = [_row(e, label, shared) for e, label in zip(loaded, labels, strict=True)]
    comparison = Comparison(
        rows=sorted(rows, key=lambda r: -r["shared_score"]),  # stable: ties keep the order given
        shared_tasks=shared,
        task_sets_differ=task_sets_differ,
        warnings=_warnings(loaded, rows, task_sets_differ, len(shared)),
    )
    if len(loaded) < 2:
        comparison.verdict = "one evaluation: nothing to compare it with"
        return comparison
    ranked = sorted(zip(rows, loaded, strict=True), key=lambda pair: -pair[0]["shared_score"])
    comparison.pair, pair_rows = _oriented_pair(ranked[0], ranked[1], shared, seed=seed, resamples=resamples)
    comparison.verdict = verdict(comparison.pair, pair_rows)
    return comparison


def _oriented_pair(first: tuple, second: tuple, shared: list[str], *, seed: int, resamples: int):
    """The statistics of two (row, evaluation) pairs with the one ahead on mean per-task
    score as ``a`` (the Kaggle score weighs tasks by their test outputs, so the order by
    score and the order by mean per-task score can differ), and the two rows in that order."""

    def stats(x: tuple, y: tuple) -> PairStats:
        return paired_statistics(
            [x[1].tasks[t]["score"] for t in shared],
            [y[1].tasks[t]["score"] for t in shared],
            a=x[0]["label"],
            b=y[0]["label"],
            seed=seed,
            resamples=resamples,
        )

    pair = stats(first, second)
    if pair.mean_difference < -AHEAD_TOLERANCE:
        return stats(second, first), [second[0], first[0]]
    return pair, [first[0], second[0]]


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def verdict(pair: PairStats, rows: list[dict]) -> str:
    """One line: who wins on the shared tasks, how sure, and whether at equal budget."""
    a, b, n = pair.a, pair.b, pair.tasks
    tie = abs(pair.mean_difference) <= AHEAD_TOLERANCE
    if tie and pair.a_wins == pair.b_wins == 0:
        head = f"{a} and {b} tie on {n} shared tasks (the same score on every task): no winner"
    elif tie:
        head = (
            f"{a} and {b} tie on mean score over {n} shared tasks ({a} ahead on {pair.a_wins}, "
            f"{b} on {pair.b_wins}; sign test {_p(pair.sign_test_p)}): no winner"
        )
    else:
        sureness = {True: "significant at 5%", False: "not significant", None: "borderline (the tests disagree)"}
        head = (
            f"{a} beats {b} by {pair.mean_difference:.3f} per task on {n} shared tasks "
            f"(95% CI {pair.ci_low:+.3f}..{pair.ci_high:+.3f}, ahead in {pair.a_ahead_share:.0%} of resamples; "
            f"sign test {pair.a_wins}-{pair.b_wins}, {_p(pair.sign_test_p)}): {sureness[pair.significant]}"
        )
    return f"{head}; {_budget_clause(rows)}"


def _budget_clause(rows: list[dict]) -> str:
    first, second = rows
    if not _same(first["budget_per_task_s"], second["budget_per_task_s"]):
        return (
            f"NOT at equal budget ({first['label']} {_seconds(first['budget_per_task_s'])} s per task, "
            f"{second['label']} {_seconds(second['budget_per_task_s'])} s): part of the gap may be the budget's"
        )
    budget = f"at equal budget ({_seconds(first['budget_per_task_s'])} s per task"
    if first["machine"] != second["machine"]:
        budget += f", but on different machines: {first['machine']} vs {second['machine']}"
    budget += ")"
    if first["data_source"] != second["data_source"]:
        return f"{budget} on different data ({first['data_source']} vs {second['data_source']})"
    return f"{budget} on {first['data_source']}"


# --------------------------------------------------------------------------- writing

# (key, full header, screen header, format)
FRACTION = "{:.3f}"
COLUMNS = (
    ("label", "model", "model", "{}"),
    ("parameters", "parameters", "params", "parameters"),
    ("context_window", "context window", "ctx", "{}"),
    ("ttft_steps_per_task", "TTFT steps/task", "steps", "count"),
    ("predictions_per_task", "predictions/task", "preds", "count"),
    ("score", "score", "score", FRACTION),
    ("shared_score", "score (shared tasks)", "shared", FRACTION),
    ("vote_1", "vote 1", "vote1", FRACTION),
    ("vote_2", "vote 2", "vote2", FRACTION),
    ("pass_n", "pass@n", "pass@n", FRACTION),
    ("accuracy", "accuracy", "acc", FRACTION),
    ("correct_size", "correct size", "size", FRACTION),
    ("unanswered", "unanswered", "unans", FRACTION),
    ("seconds_per_task", "seconds/task", "s/task", "seconds"),
    ("budget_per_task_s", "budget s/task", "budget", "seconds"),
    ("data_source", "data", "data", "{}"),
    ("tasks", "tasks", "tasks", "{}"),
)
SCREEN_WIDTH = {"label": 28, "data_source": 20}  # longer names are cut on the screen only


def _parameters(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 10**9:
        return f"{value / 1e9:.1f}B"
    return f"{value / 1e6:.0f}M"


def _cell(value, style: str) -> str:
    if value is None:
        return "-"
    if style == "parameters":
        return _parameters(value)
    if style == "count":
        return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    if style == "seconds":
        return _seconds(value)
    return style.format(value)


def _columns(comparison: Comparison, *, screen: bool) -> list[tuple]:
    """The table's columns; the shared score only when it differs from the score, and
    on the screen the data columns only when the evaluations differ in them."""
    columns = [c for c in COLUMNS if comparison.task_sets_differ or c[0] != "shared_score"]
    if screen and not comparison.task_sets_differ and _differing(comparison.rows, "data_source") is None:
        columns = [c for c in columns if c[0] not in ("data_source", "tasks")]
    return columns


def _cut(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[: width - 1] + "~"


def _table(comparison: Comparison, *, screen: bool) -> list[list[str]]:
    columns = _columns(comparison, screen=screen)
    header = [c[2] if screen else c[1] for c in columns]
    body = [
        [
            _cut(_cell(row[key], style), SCREEN_WIDTH.get(key) if screen else None)
            for key, _full, _short, style in columns
        ]
        for row in comparison.rows
    ]
    return [header, *body]


def comparison_text(comparison: Comparison) -> str:
    """What the screen shows: the data line, an aligned table, warnings, the verdict."""
    table = _table(comparison, screen=True)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    if len(_columns(comparison, screen=True)) < len(_columns(comparison, screen=False)):
        first = comparison.rows[0]
        lines.append(f"data: {first['data_source']}, {first['tasks']} tasks")
    for row in table:
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines += [f"warning: {w}" for w in comparison.warnings]
    lines.append(f"verdict: {comparison.verdict}")
    return "\n".join(lines)


def comparison_markdown(comparison: Comparison) -> str:
    table = _table(comparison, screen=False)
    lines = ["# Comparison", "", "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table[1:]]
    lines += ["", "Score columns are shares (Kaggle score: solved test outputs / test outputs).", ""]
    if comparison.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in comparison.warnings), ""]
    if comparison.pair is not None:
        lines += ["## Paired statistics", "", *_pair_lines(comparison.pair), ""]
    lines += ["## Verdict", "", comparison.verdict, ""]
    lines += ["## Files", "", *(f"- {r['label']}: `{r['path']}`" for r in comparison.rows), ""]
    return "\n".join(lines)


def _pair_lines(pair: PairStats) -> list[str]:
    a, b = pair.a, pair.b
    return [
        f"- the best two by score, {a} against {b}, on {pair.tasks} shared tasks",
        f"- mean per-task score difference ({a} minus {b}): {pair.mean_difference:+.4f}",
        (
            f"- paired bootstrap ({pair.resamples} resamples of tasks, seed {pair.seed}): 95% interval "
            f"{pair.ci_low:+.4f}..{pair.ci_high:+.4f}; {a} ahead in {pair.a_ahead_share:.1%} of resamples"
        ),
        (
            f"- sign test: {a} higher on {pair.a_wins} tasks, {b} on {pair.b_wins}, the rest alike; "
            f"two-sided p = {pair.sign_test_p:.4g}"
        ),
    ]


def comparison_dict(comparison: Comparison) -> dict:
    from .. import __version__

    return {
        "kind": COMPARISON_KIND,
        "version": COMPARISON_VERSION,
        "evaluations": comparison.rows,
        "shared_tasks": comparison.shared_tasks,
        "task_sets_differ": comparison.task_sets_differ,
        "warnings": comparison.warnings,
        "pair": None if comparison.pair is None else {**asdict(comparison.pair), "tested": "best two by score"},
        "verdict": comparison.verdict,
        "compared_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "arcsub_version": __version__,
    }


def write_comparison_json(comparison: Comparison, path: str | os.PathLike) -> Path:
    from ..io import write_json_atomic

    return write_json_atomic(path, comparison_dict(comparison), indent=1)


def write_comparison_markdown(comparison: Comparison, path: str | os.PathLike) -> Path:
    from ..io import write_text_atomic

    return write_text_atomic(path, comparison_markdown(comparison))
