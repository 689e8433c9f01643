"""``arcsub compare``: the table, the paired statistics on cases whose answer is known,
the warnings, the refusals, and the command end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from arcsub.cli import main
from arcsub.errors import ArcsubError
from arcsub.evaluate.compare import (
    EvaluationFileError,
    PairStats,
    compare_evaluations,
    comparison_markdown,
    comparison_text,
    load_evaluation,
    paired_statistics,
    sign_test_p,
)
from arcsub.evaluate.compare_plot import use_log_axis

METRICS = ("accuracy", "pass_n", "vote_1", "vote_2", "correct_size", "unanswered")


def evaluation_record(
    solved: dict[str, int | tuple[int, int]],
    *,
    name: str = "SmolLM2-135M-Instruct",
    parameters: int | None = 134_515_008,
    source: str = "arc1/evaluation",
    per_task_s: float = 60.0,
    machine: str = "local-cpu",
    seconds_per_task: float = 55.0,
    overlap: int = 0,
) -> dict:
    """A version-1 evaluation.json: ``solved`` maps task id to solved test outputs (of
    one), or to (solved, test outputs)."""
    tasks = {}
    for task_id, value in solved.items():
        hits, outputs = value if isinstance(value, tuple) else (value, 1)
        share = hits / outputs
        tasks[task_id] = {
            "score": share,
            "solved": hits,
            "test_outputs": outputs,
            **dict.fromkeys(METRICS, share),
            "predictions": 8,
            "ttft_steps": 20,
            "seconds": seconds_per_task,
            "train_s": seconds_per_task / 2,
            "infer_s": seconds_per_task / 2,
            "source": "model",
        }
    outputs = sum(t["test_outputs"] for t in tasks.values())
    score = sum(t["solved"] for t in tasks.values()) / outputs
    return {
        "kind": "arcsub-evaluation",
        "version": 1,
        "model": {"name": name, "path": f"/models/{name}", "parameters": parameters, "context_window": 8192},
        "data": {"source": source, "tasks": len(tasks), "test_outputs": outputs},
        "budget": {
            "per_task_s": per_task_s,
            "profile": None,
            "kernel_budget_s": 3600.0,
            "workers": 1,
            "machine": machine,
        },
        "settings": {"ttft_max_steps": 20, "augmentations": 8, "samples_per_prompt": 1, "backend": "transformers"},
        "overall": {
            "score": score,
            "solved": sum(t["solved"] for t in tasks.values()),
            "test_outputs": outputs,
            **dict.fromkeys(METRICS, score),
            "predictions": 8 * len(tasks),
            "tasks_by_model": len(tasks),
            "tasks_unfinished": 0,
            "ttft_steps_per_task": 20.0,
            "predictions_per_task": 8.0,
            "seconds_per_task": seconds_per_task,
            "stage_seconds": {"finetune": 1.0, "inference": 1.0, "total": 2.0},
        },
        "tasks": tasks,
        "leakage": {"allow_overlap": overlap > 0, "overlap": overlap},
        "evaluated_at": "2025-01-01T00:00:00+00:00",
        "arcsub_version": "0.1.0",
    }


def write_evaluation(folder: Path, record: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(record))
    return folder


def task_ids(count: int) -> list[str]:
    return [f"t{i:02d}" for i in range(count)]


def ten_more_solved(tmp_path: Path, **b_options) -> tuple[Path, Path]:
    """Over 30 tasks: both solve t10..t14, A alone solves t00..t09."""
    ids = task_ids(30)
    a = {t: int(i < 15) for i, t in enumerate(ids)}
    b = {t: int(10 <= i < 15) for i, t in enumerate(ids)}
    return (
        write_evaluation(tmp_path / "a", evaluation_record(a, name="A")),
        write_evaluation(tmp_path / "b", evaluation_record(b, name="B", **b_options)),
    )


# --------------------------------------------------------------------------- statistics


def test_sign_test_is_the_exact_two_sided_binomial():
    assert sign_test_p(10, 0) == 2 / 1024
    assert sign_test_p(0, 10) == 2 / 1024
    assert sign_test_p(7, 3) == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)
    assert sign_test_p(5, 5) == 1.0  # the two tails overlap at the middle: capped
    assert sign_test_p(0, 0) == 1.0  # nothing differs: no evidence either way


def test_a_that_solves_ten_more_tasks_wins_significantly(tmp_path):
    a, b = ten_more_solved(tmp_path)
    comparison = compare_evaluations([load_evaluation(b), load_evaluation(a)])  # the order given does not matter
    pair = comparison.pair
    assert [r["label"] for r in comparison.rows] == ["A", "B"]
    assert (pair.a, pair.b, pair.tasks) == ("A", "B", 30)
    assert (pair.a_wins, pair.b_wins) == (10, 0)
    assert pair.sign_test_p == 2 / 1024
    assert pair.mean_difference == pytest.approx(10 / 30)
    assert 0 < pair.ci_low < 10 / 30 < pair.ci_high <= 1
    assert pair.a_ahead_share == 1.0
    assert pair.significant is True
    assert comparison.verdict.startswith("A beats B by 0.333 per task on 30 shared tasks (95% CI +")
    assert "sign test 10-0, p=0.002): significant at 5%" in comparison.verdict
    assert comparison.verdict.endswith("at equal budget (60 s per task) on arc1/evaluation")
    assert comparison.warnings == []


def test_identical_evaluations_have_no_winner(tmp_path):
    solved = {t: int(i % 3 == 0) for i, t in enumerate(task_ids(12))}
    a = write_evaluation(tmp_path / "a", evaluation_record(solved, name="A"))
    b = write_evaluation(tmp_path / "b", evaluation_record(solved, name="B"))
    comparison = compare_evaluations([a, b])
    pair = comparison.pair
    assert (pair.mean_difference, pair.ci_low, pair.ci_high, pair.a_ahead_share) == (0, 0, 0, 0)
    assert (pair.a_wins, pair.b_wins, pair.sign_test_p) == (0, 0, 1.0)
    assert "no winner" in comparison.verdict and "beats" not in comparison.verdict


def test_equal_means_with_differing_tasks_have_no_winner():
    pair = paired_statistics([1, 0, 1, 0], [0, 1, 1, 0], resamples=500)
    assert pair.mean_difference == 0 and (pair.a_wins, pair.b_wins) == (1, 1)
    assert pair.ci_low < 0 < pair.ci_high


def test_bootstrap_interval_holds_the_mean_difference_and_has_the_normal_width():
    # 12 tasks where A is ahead, 4 where B is, 20 alike, and 4 two-output tasks half solved by A.
    a = [1.0] * 12 + [0.0] * 4 + [1.0] * 10 + [0.0] * 10 + [0.5] * 4
    b = [0.0] * 12 + [1.0] * 4 + [1.0] * 10 + [0.0] * 10 + [0.0] * 4
    differences = [x - y for x, y in zip(a, b)]
    mean = sum(differences) / len(differences)
    pair = paired_statistics(a, b, seed=3, resamples=10_000)
    assert pair.mean_difference == pytest.approx(mean)
    assert pair.ci_low < mean < pair.ci_high
    # For a mean of 40 values the bootstrap interval is close to mean +- 1.96 standard errors.
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / len(differences))
    assert pair.ci_high - pair.ci_low == pytest.approx(2 * 1.96 * sd / math.sqrt(len(differences)), rel=0.15)
    assert (pair.a_wins, pair.b_wins) == (16, 4)


def test_bootstrap_is_reproducible_by_seed():
    a, b = [1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 1, 0, 0]
    first = paired_statistics(a, b, seed=7, resamples=2000)
    assert paired_statistics(a, b, seed=7, resamples=2000) == first
    other = paired_statistics(a, b, seed=8, resamples=2000)
    assert (other.ci_low, other.ci_high, other.a_ahead_share) != (first.ci_low, first.ci_high, first.a_ahead_share)


def test_significance_needs_both_tests():
    def stats(p: float, low: float, high: float) -> PairStats:
        return PairStats("A", "B", 20, 0.1, low, high, 0.9, 5, 1, p, 1000, 0)

    assert stats(0.01, 0.02, 0.2).significant is True
    assert stats(0.3, -0.02, 0.2).significant is False
    assert stats(0.08, 0.01, 0.2).significant is None  # they disagree: borderline


def test_resamples_must_be_positive():
    with pytest.raises(ArcsubError, match="`resamples` 0"):
        paired_statistics([1], [0], resamples=0)


# --------------------------------------------------------------------------- the comparison


def test_table_rows_hold_the_columns_and_rank_by_score(tmp_path):
    ids = task_ids(10)
    records = {
        "low": evaluation_record({t: int(i < 2) for i, t in enumerate(ids)}, name="low", seconds_per_task=12.5),
        "high": evaluation_record(
            {t: int(i < 6) for i, t in enumerate(ids)}, name="high", parameters=494_032_768, seconds_per_task=58.0
        ),
        "mid": evaluation_record({t: int(i < 4) for i, t in enumerate(ids)}, name="mid", parameters=None),
    }
    comparison = compare_evaluations([write_evaluation(tmp_path / k, r) for k, r in records.items()])
    assert [r["label"] for r in comparison.rows] == ["high", "mid", "low"]
    high = comparison.rows[0]
    assert high["score"] == pytest.approx(0.6) and high["shared_score"] == pytest.approx(0.6)
    assert (high["parameters"], high["context_window"], high["tasks"]) == (494_032_768, 8192, 10)
    assert (high["seconds_per_task"], high["budget_per_task_s"], high["data_source"]) == (58.0, 60.0, "arc1/evaluation")
    assert (comparison.pair.a, comparison.pair.b) == ("high", "mid")  # the best two
    text = comparison_text(comparison)
    lines = text.splitlines()
    assert lines[0] == "data: arc1/evaluation, 10 tasks"
    assert lines[1].split() == [
        "model",
        "params",
        "ctx",
        "steps",
        "preds",
        "score",
        "vote1",
        "vote2",
        "pass@n",
        "acc",
        "size",
        "unans",
        "s/task",
        "budget",
    ]
    assert lines[2].split()[:6] == ["high", "494M", "8192", "20", "8.0", "0.600"]
    assert lines[3].split()[1] == "-"  # unknown parameter count
    assert lines[-1].startswith("verdict: high beats mid by 0.200")
    assert max(len(line) for line in lines[:5]) <= 120  # the table fits a screen
    markdown = comparison_markdown(comparison)
    assert "| model | parameters | context window |" in markdown and "| high | 494M | 8192 |" in markdown


def test_different_budgets_say_the_comparison_is_not_at_equal_budget(tmp_path):
    a, b = ten_more_solved(tmp_path, per_task_s=120.0, machine="t4x2")
    comparison = compare_evaluations([a, b])
    assert any("per-task budgets differ (A 60 s, B 120 s)" in w for w in comparison.warnings)
    assert any("machines differ" in w for w in comparison.warnings)
    assert "NOT at equal budget (A 60 s per task, B 120 s)" in comparison.verdict
    assert "at equal budget (" not in comparison.verdict.replace("NOT at equal budget (", "")


def test_same_budget_on_other_machines_is_said(tmp_path):
    a, b = ten_more_solved(tmp_path, machine="t4x2")
    verdict = compare_evaluations([a, b]).verdict
    assert "at equal budget (60 s per task, but on different machines: local-cpu vs t4x2)" in verdict


def test_differing_task_sets_compare_the_shared_tasks_only(tmp_path):
    ids = task_ids(20)
    a = {t: 1 for t in ids[:15]}  # t00..t14, all solved
    b = {t: int(t in ids[10:12]) for t in ids[5:20]}  # t05..t19, solves t10, t11
    comparison = compare_evaluations(
        [
            write_evaluation(tmp_path / "a", evaluation_record(a, name="A", source="arc1/evaluation[:15]")),
            write_evaluation(tmp_path / "b", evaluation_record(b, name="B", source="arc1/evaluation[5:]")),
        ]
    )
    assert comparison.shared_tasks == ids[5:15]
    assert comparison.pair.tasks == 10 and (comparison.pair.a_wins, comparison.pair.b_wins) == (8, 0)
    assert [r["shared_score"] for r in comparison.rows] == [1.0, 0.2]
    assert any(
        "task sets differ (A 15, B 15 tasks)" in w and "the 10 tasks all share" in w for w in comparison.warnings
    )
    assert any(w.startswith("data sources differ") for w in comparison.warnings)
    assert "on different data (arc1/evaluation[:15] vs arc1/evaluation[5:])" in comparison.verdict
    text = comparison_text(comparison)
    assert "shared" in text.splitlines()[0].split() and "data" in text.splitlines()[0].split()
    assert "warning: task sets differ" in text


def test_disjoint_task_sets_are_refused(tmp_path):
    a = write_evaluation(tmp_path / "a", evaluation_record({"t1": 1, "t2": 0}, name="A"))
    b = write_evaluation(tmp_path / "b", evaluation_record({"t3": 1}, name="B"))
    with pytest.raises(ArcsubError, match="share no task") as error:
        compare_evaluations([a, b])
    assert str(a / "evaluation.json") in str(error.value) and str(b / "evaluation.json") in str(error.value)


def test_no_task_common_to_all_is_refused(tmp_path):
    paths = [
        write_evaluation(tmp_path / name, evaluation_record(solved, name=name))
        for name, solved in (("A", {"t1": 1, "t2": 1}), ("B", {"t2": 1, "t3": 1}), ("C", {"t1": 1, "t3": 1}))
    ]
    with pytest.raises(ArcsubError, match="no task is common to all"):
        compare_evaluations(paths)


def test_the_pair_is_oriented_by_mean_per_task_score(tmp_path):
    # A solves one task of 4 test outputs (Kaggle 4/6), B two tasks of 1 (Kaggle 2/6):
    # A leads by score, B by mean per-task score, which the paired tests use.
    a = {"t1": (4, 4), "t2": 0, "t3": 0}
    b = {"t1": (0, 4), "t2": 1, "t3": 1}
    comparison = compare_evaluations(
        [
            write_evaluation(tmp_path / "a", evaluation_record(a, name="A")),
            write_evaluation(tmp_path / "b", evaluation_record(b, name="B")),
        ],
        resamples=1000,
    )
    assert [r["label"] for r in comparison.rows] == ["A", "B"]
    assert (comparison.pair.a, comparison.pair.b) == ("B", "A")
    assert comparison.pair.mean_difference == pytest.approx(1 / 3)
    assert comparison.verdict.startswith("B beats A by 0.333")


def test_the_same_model_twice_gets_labels_from_its_folders(tmp_path):
    a, b = ten_more_solved(tmp_path)
    record = json.loads((b / "evaluation.json").read_text())
    record["model"]["name"] = "A"
    write_evaluation(b, record)
    comparison = compare_evaluations([a, b])
    assert [r["label"] for r in comparison.rows] == ["A@a", "A@b"]
    assert comparison.verdict.startswith("A@a beats A@b")


def test_a_model_given_as_a_folder_is_labelled_by_its_last_part(tmp_path):
    a, b = ten_more_solved(tmp_path)
    record = json.loads((a / "evaluation.json").read_text())
    record["model"]["name"] = "runs/models/smol16k/"
    write_evaluation(a, record)
    comparison = compare_evaluations([a, b])
    assert comparison.rows[0]["label"] == "smol16k"
    assert comparison.rows[0]["model"] == "runs/models/smol16k/"


def test_one_evaluation_is_a_table_without_a_verdict(tmp_path):
    a, _ = ten_more_solved(tmp_path)
    comparison = compare_evaluations([a])
    assert comparison.pair is None and len(comparison.rows) == 1
    assert comparison.verdict == "one evaluation: nothing to compare it with"


def test_leakage_is_warned(tmp_path):
    a = write_evaluation(tmp_path / "a", evaluation_record({"t1": 1}, name="A", overlap=3))
    b = write_evaluation(tmp_path / "b", evaluation_record({"t1": 0}, name="B"))
    assert any("A: its model was trained on 3" in w for w in compare_evaluations([a, b]).warnings)


# --------------------------------------------------------------------------- bad input


def broken(change):
    def make(tmp_path: Path) -> Path:
        record = evaluation_record({"t1": 1})
        change(record)
        return write_evaluation(tmp_path / "run", record) / "evaluation.json"

    return make


def raw(text: str):
    def make(tmp_path: Path) -> Path:
        (tmp_path / "run").mkdir()
        path = tmp_path / "run" / "evaluation.json"
        path.write_text(text)
        return path

    return make


def _missing_metric(record):
    del record["overall"]["vote_1"]


def _missing_task_field(record):
    del record["tasks"]["t1"]["solved"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp_path: tmp_path / "nowhere" / "evaluation.json", "no such file"),
        (lambda tmp_path: (tmp_path / "empty").mkdir() or tmp_path / "empty", "no evaluation.json in this folder"),
        (raw("{not json"), "not valid JSON (Expecting property name"),
        (raw("[1, 2]"), "not an arcsub evaluation (kind None"),
        (broken(lambda r: r.update(kind="arcsub-comparison")), "not an arcsub evaluation (kind 'arcsub-comparison'"),
        (broken(lambda r: r.update(version=2)), "evaluation version 2, this arcsub reads version 1; upgrade arcsub"),
        (broken(_missing_metric), "missing field 'overall.vote_1'"),
        (broken(_missing_task_field), "missing field 'tasks.t1.solved'"),
        (broken(lambda r: r["budget"].update(per_task_s="60")), "'budget.per_task_s' should be a number, not '60'"),
        (broken(lambda r: r["model"].update(parameters=1.5)), "'model.parameters' should be a whole number or null"),
        (broken(lambda r: r.update(tasks={})), "field 'tasks' is missing or holds no task"),
        (broken(lambda r: r.pop("model")), "field 'model' is missing or not an object"),
    ],
)
def test_bad_files_are_one_line_errors_that_name_the_file(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(EvaluationFileError) as error:
        load_evaluation(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_a_folder_or_its_file_load_alike(tmp_path):
    a, _ = ten_more_solved(tmp_path)
    assert load_evaluation(a) == load_evaluation(a / "evaluation.json")


# --------------------------------------------------------------------------- the command


def test_the_command_prints_the_table_and_verdict_and_writes_its_files(tmp_path, capsys):
    a, b = ten_more_solved(tmp_path)
    out = tmp_path / "out"
    code = main(["compare", str(a), str(b / "evaluation.json"), "--out", str(out), "--resamples", "2000"])
    printed, said = capsys.readouterr()
    assert code == 0
    assert printed.splitlines()[1].startswith("model ")
    assert printed.splitlines()[-1].startswith("verdict: A beats B by 0.333")
    for name in ("comparison.json", "comparison.md", "comparison.png"):
        assert f"wrote {out / name}" in said
    saved = json.loads((out / "comparison.json").read_text())
    assert (saved["kind"], saved["version"], saved["pair"]["resamples"]) == ("arcsub-comparison", 1, 2000)
    assert saved["pair"]["sign_test_p"] == 2 / 1024
    assert [r["label"] for r in saved["evaluations"]] == ["A", "B"]
    assert saved["verdict"] == printed.splitlines()[-1].removeprefix("verdict: ")
    assert "## Verdict" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_draws_where_asked(tmp_path, capsys):
    a, b = ten_more_solved(tmp_path, seconds_per_task=3000.0)
    plot = tmp_path / "pictures" / "cost.png"
    code = main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--plot", str(plot), "--resamples", "100"])
    capsys.readouterr()
    assert code == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "out" / "comparison.png").exists()


def test_costs_over_a_wide_range_get_a_log_axis():
    assert use_log_axis([55.0, 3000.0])
    assert not use_log_axis([55.0, 120.0, 300.0])
    assert not use_log_axis([0.0, 3000.0])  # no log of zero: a linear axis


def test_the_command_reports_a_bad_file_on_one_line(tmp_path, capsys):
    missing = tmp_path / "missing"
    code = main(["compare", str(missing)])
    printed, said = capsys.readouterr()
    assert code == 2 and printed == ""
    assert said == f"arcsub: error: {missing}: no such file; run `arcsub evaluate ... --out FOLDER` and pass FOLDER\n"
