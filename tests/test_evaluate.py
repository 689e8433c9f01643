"""arcsub evaluate: the real kernel (kernel/main.py) on a tiny random-weight model,
scored here against solutions it never sees; resume, refusals, the budget per task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from arcsub.evaluate.budget import EvaluationError, kernel_budget_s, task_budget
from arcsub.evaluate.metrics import overall
from arcsub.evaluate.run import EvaluationOptions, evaluate
from arcsub.kernel import results_dir

SETTINGS = (
    "[prompt]\nmax_seq_len = 2048\n[finetune]\nlora_rank = 8\n"
    '[inference]\nbackend = "transformers"\nnum_augmentations = 2\nscore_augmentations = 2\n'
    "[kernel]\nmax_steps = 8\n"
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate-settings") / "arcsub.toml"
    path.write_text(SETTINGS)
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_llama_path, settings):
    """One evaluation of the 2 smallest arc1/evaluation tasks, shared by the tests below."""
    out = tmp_path_factory.mktemp("evaluation")
    options = EvaluationOptions(
        out=out, model=str(tiny_llama_path), data="arc1/evaluation", smallest=2, config=settings, per_task_s=20.0
    )
    return options, evaluate(options, progress=False)


def test_an_evaluation_scores_every_task_from_the_kernels_results(evaluated):
    from arcsub.submission import load_submission, score_submission
    from arcsub.tasks import load_tasks

    options, evaluation = evaluated
    out = options.out
    assert evaluation["kind"] == "arcsub-evaluation" and evaluation["version"] == 1
    assert json.loads((out / "evaluation.json").read_text()) == evaluation
    assert "| task | score |" in (out / "evaluation.md").read_text()
    tasks = [t for t in load_tasks("arc1/evaluation").tasks if t.id in evaluation["tasks"]]
    assert len(tasks) == 2 and evaluation["data"]["tasks"] == 2
    # The score is Kaggle's, of the submission the kernel left.
    expected = score_submission(load_submission(out / "kaggle/working/submission.json"), tasks)
    assert evaluation["overall"]["score"] == pytest.approx(expected.score)
    assert evaluation["overall"]["solved"] == expected.solved
    assert evaluation["kernel"]["ran"] and evaluation["kernel"]["exit_code"] == 0
    for task in tasks:
        entry = evaluation["tasks"][task.id]
        assert entry["source"] in ("score", "sample", "fallback")
        assert entry["predictions"] > 0 and entry["test_outputs"] == len(task.test)
        assert 0 <= entry["vote_2"] <= 1 and entry["seconds"] > 0
    # Slices fixed up front: 20 s on average, by size, whatever start-up took.
    slices = [evaluation["tasks"][t.id]["slice_s"] for t in tasks]
    assert sum(slices) == pytest.approx(2 * 20.0, abs=2.0)
    assert evaluation["model"]["parameters"] and evaluation["model"]["context_window"] == 8192


def test_the_solutions_never_reach_the_kernels_inputs(evaluated):
    options, _ = evaluated
    inputs = options.out / "kaggle" / "input"
    for root, _dirs, files in os.walk(inputs):
        for name in files:
            if name.endswith(".json") and "challenges" in name:
                with open(os.path.join(root, name)) as file:
                    data = json.load(file)
                assert all("output" not in test for task in data.values() for test in task["test"])
            assert "solutions" not in name


def test_a_rerun_resumes_from_the_kernels_per_task_results(evaluated, tiny_llama_path, settings):
    options, first = evaluated
    again = evaluate(options, progress=False)  # everything done: the kernel does not start
    assert not again["kernel"]["ran"]
    assert again["tasks"] == first["tasks"]
    # One result gone: the kernel runs that task only, and keeps the other.
    results = results_dir(options.out / "kaggle" / "working")
    gone = min(results.glob("*.json"))
    gone.unlink()
    third = evaluate(options, progress=False)
    assert third["kernel"]["ran"]
    log = (options.out / "logs" / "kernel.log").read_text()
    assert "resuming: 1 task(s) already done" in log
    assert set(third["tasks"]) == set(first["tasks"]) and gone.is_file()


def test_another_budget_in_the_same_folder_is_refused_unless_restarted(evaluated):
    options, _ = evaluated
    other = EvaluationOptions(**{**options.__dict__, "per_task_s": 45.0})
    with pytest.raises(EvaluationError, match=r"per_task_s.*`restart`"):
        evaluate(other, progress=False)


def test_a_second_slice_leaves_the_first_out():
    from arcsub.evaluate.run import load_evaluation_tasks
    from arcsub.tasks import load_tasks, smallest_tasks

    everything = load_tasks("arc1/evaluation").tasks
    first = {t.id for t in smallest_tasks(everything, 3)}
    both = {t.id for t in smallest_tasks(everything, 7)}
    second = load_evaluation_tasks(EvaluationOptions(out=Path("unused"), smallest=4, skip_smallest=3))
    assert {t.id for t in second} == both - first
    rest = load_evaluation_tasks(EvaluationOptions(out=Path("unused"), skip_smallest=3))
    assert len(rest) == len(everything) - 3 and not first & {t.id for t in rest}
    with pytest.raises(EvaluationError, match="`skip_smallest` -1"):
        load_evaluation_tasks(EvaluationOptions(out=Path("unused"), skip_smallest=-1))


def test_a_model_trained_on_the_tasks_is_refused_then_allowed(tmp_path, tiny_llama_path, settings):
    from arcsub.leakage import LeakageError, TrainingManifest, write_training_manifest
    from arcsub.tasks import load_tasks, smallest_tasks

    model = tmp_path / "trained"
    model.mkdir()
    for entry in tiny_llama_path.iterdir():
        (model / entry.name).symlink_to(entry)
    task = smallest_tasks(load_tasks("arc1/evaluation").tasks, 1)[0]
    manifest = TrainingManifest()
    manifest.add("arc1/evaluation", [task])
    write_training_manifest(model, manifest)
    options = EvaluationOptions(
        out=tmp_path / "ev", model=str(model), smallest=1, config=settings, per_task_s=10.0, workers=1
    )
    with pytest.raises(LeakageError, match="trained on 1 of these 1 tasks"):
        evaluate(options, progress=False)
    assert not (tmp_path / "ev").exists()  # refused before anything was written
    options.allow_overlap = True
    evaluation = evaluate(options, progress=False)
    assert evaluation["leakage"] == {"allow_overlap": True, "overlap": 1}
    assert list(evaluation["tasks"]) == [task.id]


def test_tasks_without_solutions_are_refused_with_one_line(tmp_path):
    from arcsub.tasks import load_tasks, tasks_to_challenges

    challenges = tmp_path / "arc-agi_test_challenges.json"
    challenges.write_text(json.dumps(tasks_to_challenges(load_tasks("arc1/evaluation[:2]").tasks)))
    with pytest.raises(EvaluationError, match="without test outputs.*`solutions`"):
        evaluate(EvaluationOptions(out=tmp_path / "ev", data=str(challenges)), progress=False)


def test_the_budget_per_task_is_given_or_what_a_profile_gives(tiny_llama_path):
    assert task_budget("m", per_task_s=30.0, competition=None).per_task_s == 30.0
    with pytest.raises(EvaluationError, match="either"):
        task_budget("m", per_task_s=30.0, competition="arc-prize-2024")
    with pytest.raises(EvaluationError, match="positive"):
        task_budget("m", per_task_s=0.0, competition=None)
    # arc-prize-2024: 12 h on 2 T4s for 100 tasks, less the margin and start-ups: under 864 s.
    budget = task_budget(str(tiny_llama_path), per_task_s=None, competition="arc-prize-2024")
    assert 600 < budget.per_task_s < 864 and budget.profile == "arc-prize-2024"
    on_l4 = task_budget(str(tiny_llama_path), per_task_s=None, competition="arc-prize-2025")
    assert on_l4.per_task_s < 43200 * 4 / 240 and on_l4.per_task_s < budget.per_task_s
    assert kernel_budget_s(10.0, 3, 20.0) > 30.0 + 20.0


def test_overall_metrics_weigh_outputs_and_predictions_as_the_score_does():
    class T:
        def __init__(self, tid):
            self.id = tid

    row = {"ttft_steps": 0, "seconds": 1.0, "train_s": 0.0, "infer_s": 1.0, "source": "score"}
    entries = {
        "a": {**row, "solved": 2, "test_outputs": 2, "score": 1.0, "pass_n": 1.0, "vote_1": 1.0, "vote_2": 1.0,
              "accuracy": 1.0, "correct_size": 1.0, "unanswered": 0.0, "predictions": 2},
        "b": {**row, "solved": 0, "test_outputs": 1, "score": 0.0, "pass_n": 0.0, "vote_1": 0.0, "vote_2": 0.0,
              "accuracy": 0.0, "correct_size": 0.5, "unanswered": 0.5, "predictions": 6, "source": "fallback"},
    }  # fmt: skip
    total = overall(entries, [T("a"), T("b")])
    assert total["score"] == pytest.approx(2 / 3) and total["vote_1"] == pytest.approx(2 / 3)
    assert total["accuracy"] == pytest.approx(2 / 8)  # 2 exact of 8 predictions
    assert total["unanswered"] == pytest.approx(3 / 8)
    assert total["tasks_by_model"] == 1 and total["predictions_per_task"] == 4.0


def test_the_cli_evaluates_and_prints_the_score(tmp_path, tiny_llama_path, settings, capsys):
    from arcsub.cli import main

    code = main(
        ["evaluate", "--model", str(tiny_llama_path), "--smallest", "1", "--config", str(settings),
         "--budget-per-task", "10", "--workers", "1", "--out", str(tmp_path / "ev"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "score " in err and "evaluation.json" in err
    with pytest.raises(SystemExit):  # argparse: the two ways of giving the budget exclude each other
        main(["evaluate", "--budget-per-task", "10", "--profile", "arc-prize-2024"])
