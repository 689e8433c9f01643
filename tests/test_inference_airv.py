"""AIRV sampling, candidate scoring, result files, resume and selection."""

import json
import math

import pytest

from arcsub.augment import Augmentation, augmentation_plan
from arcsub.config import Config
from arcsub.encoding import get_codec
from arcsub.inference.airv import answer_side_bounds, full_answer_budget, sample, sample_jobs, to_prediction
from arcsub.inference.attempts import select_attempts
from arcsub.inference.backend import Completion
from arcsub.inference.run import AdaptersNotFoundError, find_adapters, infer
from arcsub.inference.store import RunMismatchError, RunStore
from arcsub.prompts import PromptBuilder
from arcsub.selection import Candidate, rank_candidates
from arcsub.submission import make_submission, validate_submission
from arcsub.tasks import Pair, Task, load_tasks

SMALL = "arc1/evaluation[66e6c45b,be03b35f]"


def small_config(**inference):
    config = Config()
    config.inference.num_augmentations = 2
    config.inference.score_augmentations = 2
    config.inference.max_candidates = 2
    config.inference.max_model_len = 4096
    for key, value in inference.items():
        setattr(config.inference, key, value)
    return config


def test_answer_bounds_follow_the_train_outputs():
    grow = Task("g", (Pair(((1,) * 3,) * 3, ((1,) * 9,) * 9),), (Pair(((1,) * 4,) * 2),))
    # rows: the largest train output (9) beats 2 x 3; columns: 4 x 3 = 12 beats 9; plus the margin
    assert answer_side_bounds(grow, 0, margin=2) == (11, 14)
    big = Task("b", (Pair(((1,) * 10,) * 10, ((1,) * 30,) * 30),), (Pair(((1,) * 20,) * 20),))
    assert answer_side_bounds(big, 0, margin=2) == (30, 30)


def test_completions_are_parsed_and_mapped_back(default_tokenizer):
    builder = PromptBuilder(Config().prompt, default_tokenizer)
    aug = Augmentation("rot90", (0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
    truth = ((1, 2, 3), (4, 5, 6))
    text = get_codec("minimal").encode(aug.apply_grid(truth))
    good = to_prediction(builder, aug, Completion(text, (1, 2), (-0.5, -1.5), "stop"))
    assert good.grid == truth and good.logprob == -1.0 and good.augmentation == aug.key
    assert to_prediction(builder, aug, Completion(text, (1,), (-1.0,), "length")).grid is None  # cut off
    assert to_prediction(builder, aug, Completion("I think the answer", (1,), (-1.0,), "stop")).grid is None


def test_jobs_cover_every_test_input_and_augmentation(default_tokenizer):
    tasks = load_tasks("arc1/evaluation[6ea4a07e]").tasks  # two test inputs
    config = small_config(num_augmentations=3)
    builder = PromptBuilder(config.prompt, default_tokenizer)
    jobs, skipped = sample_jobs(tasks, builder, config, {"6ea4a07e": "/adapters/a"}, 4096)
    assert not skipped and len(jobs) == 2 * 3
    assert [j.augmentation.key for j in jobs[:3]] == [a.key for a in augmentation_plan(tasks[0], 3, purpose="sample")]
    assert {j.request.adapter for j in jobs} == {"/adapters/a"}
    for job in jobs:
        assert len(job.request.prompt_ids) + job.request.max_tokens <= 4096
        assert job.request.temperature == 0 and job.request.n == 1


def test_window_bound_gives_answers_the_room_left_up_to_30x30(default_tokenizer):
    tasks = load_tasks("arc1/evaluation[6ea4a07e]").tasks
    config = small_config(num_augmentations=1)
    builder = PromptBuilder(config.prompt, default_tokenizer)
    (bounded, _), _ = sample_jobs(tasks, builder, config, None, 4096)
    roomy_config = small_config(num_augmentations=1, answer_bound="window", temperature=1.0, min_p=0.1)
    (roomy, _), _ = sample_jobs(tasks, builder, roomy_config, None, 4096)
    assert roomy.request.prompt_ids == bounded.request.prompt_ids  # the same train pairs fit
    full = full_answer_budget(builder)  # a 30x30 grid: 30 rows of 30 digits and a newline
    assert roomy.request.max_tokens == min(full, 4096 - len(roomy.request.prompt_ids)) > bounded.request.max_tokens
    assert (roomy.request.temperature, roomy.request.min_p) == (1.0, 0.1)
    (tight, _), _ = sample_jobs(tasks, builder, roomy_config, None, len(bounded.request.prompt_ids) + 200)
    assert tight.request.max_tokens == 200  # no more than the window has left


def test_sample_on_vllm(vllm_backend, default_tokenizer, fake_terminal, monkeypatch):
    """With bars on (a terminal), vLLM draws its progress through arcsub's bar factory."""
    monkeypatch.setattr(vllm_backend, "progress", True)
    tasks = load_tasks(SMALL).tasks
    config = small_config()
    predictions = sample(tasks, vllm_backend, PromptBuilder(config.prompt, default_tokenizer), config)
    for task in tasks:
        (preds,) = predictions[task.id]
        assert [p.augmentation for p in preds] == [a.key for a in augmentation_plan(task, 2, purpose="sample")]
        assert all(p.logprob is not None and p.logprob < 0 for p in preds)
    assert "sampling: 100%" in fake_terminal.getvalue()


def test_infer_writes_resumes_and_refuses_mixed_settings(
    vllm_backend, default_model_path, default_tokenizer, random_lora_path, tmp_path
):
    tasks = load_tasks(SMALL).tasks
    config = small_config()
    out = tmp_path / "pred"
    kwargs = {"adapters_dir": random_lora_path, "data_label": SMALL, "progress": False}
    report = infer(tasks, default_model_path, default_tokenizer, config, out, backend=vllm_backend, **kwargs)
    assert sorted(report.sampled) == sorted(report.scored) == sorted(t.id for t in tasks)
    store = RunStore(out)
    for task in tasks:
        assert store.has("sample", task.id) and store.has("score", task.id)
        for candidate in store.load_scores(task.id)[0]:
            assert len(candidate.scores) == 2 and all(s < 0 for s in candidate.scores.values())
    assert json.loads((out / "run.json").read_text())["data"] == SMALL

    # everything on disk: no engine is needed (none passed, none started)
    again = infer(tasks, default_model_path, default_tokenizer, config, out, **kwargs)
    assert again.sampled == [] and again.scored == [] and sorted(again.reused) == sorted(t.id for t in tasks)

    other = small_config(num_augmentations=3)
    with pytest.raises(RunMismatchError, match="other settings"):
        infer(tasks, default_model_path, default_tokenizer, other, out, **kwargs)
    # selection-only changes do not invalidate anything
    infer(tasks, default_model_path, default_tokenizer, small_config(selection="votes"), out, **kwargs)


def test_find_adapters(tmp_path):
    two_pairs = (Pair(((1,),), ((2,),)), Pair(((3,),), ((4,),)))
    t1, t2 = (Task(name, two_pairs, (Pair(((5,),)),)) for name in ("t1", "t2"))
    one_pair = Task("t3", two_pairs[:1], (Pair(((5,),)),))  # nothing to train on: leave-one-out needs 2
    for name in ("t1", "shared"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    assert find_adapters(tmp_path, [t1, t2]) == ({"t1": str(tmp_path / "t1"), "t2": str(tmp_path / "shared")}, [])
    assert find_adapters(None, [t1]) == ({}, [])
    (tmp_path / "shared" / "adapter_config.json").unlink()
    assert find_adapters(tmp_path, [t1, t2, one_pair]) == ({"t1": str(tmp_path / "t1")}, ["t2"])


def test_a_wrong_adapters_folder_is_an_error_before_anything_is_written(tmp_path, capsys):
    from arcsub.cli import main

    task = load_tasks(SMALL).tasks[:1]
    with pytest.raises(AdaptersNotFoundError, match="no-such: adapters folder not found"):
        find_adapters(tmp_path / "no-such", task)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdaptersNotFoundError, match="empty: holds no adapter"):
        find_adapters(tmp_path / "empty", task)
    out = tmp_path / "pred"
    args = ["infer", "--data", SMALL, "--adapters", str(tmp_path / "typo"), "-o", str(out), "--backend", "transformers"]
    assert main(args) == 2
    assert "typo: adapters folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_tasks_without_an_adapter_are_named_and_counted(tiny_llama_path, default_tokenizer, tmp_path, caplog):
    """The second task has train pairs but no adapter: it runs on the base model, and
    the run says so instead of silently losing its fine-tuning."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tasks = load_tasks(SMALL).tasks
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_path), lora).save_pretrained(
        tmp_path / "adapters" / tasks[0].id
    )
    config = small_config(backend="transformers", scoring=False)
    with caplog.at_level("WARNING", logger="arcsub"):
        report = infer(
            tasks, tiny_llama_path, default_tokenizer, config, tmp_path / "pred",
            adapters_dir=tmp_path / "adapters", progress=False,
        )  # fmt: skip
    assert report.without_adapter == [tasks[1].id] and sorted(report.sampled) == sorted(t.id for t in tasks)
    assert f"no adapter for 1 task(s) with train pairs; the base model serves them: {tasks[1].id}" in caplog.text
    assert "1 without an adapter" in report.summary()


def test_selection_ranks_and_always_fills_both_attempts(tmp_path):
    a, b, c = ((1,),), ((2,),), ((3,),)
    task = Task("t", (Pair(((5,),), ((5,),)),), (Pair(((7,),), a), Pair(((8,),), b)))
    store = RunStore(tmp_path)
    scored = [
        [
            Candidate(a, 1, [-1.0], 0, {"id": -1.0, "rot90": -1.0}),
            Candidate(c, 3, [-0.1], 1, {"id": -4.0, "rot90": -5.0}),
        ],
        [],  # nothing parsed for the second test input
    ]
    store.save_scores("t", scored)
    selection = select_attempts([task], store, "combined")
    # combined: a = -1 + log(1/4) = -2.39, c = -4.5 + log(3/4) = -4.79
    assert selection.attempts["t"][0] == (a, c)
    assert select_attempts([task], store, "votes").attempts["t"][0] == (c, a)
    # hits (2025 winners): a = 1 - 1.0 = 0.0, c = 3 - 4.5 = -1.5
    assert select_attempts([task], store, "hits").attempts["t"][0] == (a, c)
    store.save_scores("t", [[Candidate(a, 1, [-1.0], 0, {"id": -1.0}), Candidate(c, 3, [-0.1], 1, {"id": -2.5})], []])
    assert select_attempts([task], store, "hits").attempts["t"][0] == (c, a)  # 0.5 against 0.0
    assert select_attempts([task], store, "scores").attempts["t"][0] == (a, c)
    store.save_scores("t", scored)
    # empty: the baseline's rule (identity fits the one train pair) then the test input
    assert selection.attempts["t"][1] == (((8,),), ((8,),))
    assert validate_submission(make_submission(selection.attempts), [task]) == []
    assert select_attempts([task], RunStore(tmp_path / "none")).source == {"t": "fallback"}


def test_rank_candidates_keeps_unscored_last():
    a = Candidate(((1,),), 5, [-0.1], 0)
    b = Candidate(((2,),), 1, [-3.0], 1, {"id": -2.0})
    assert [c.grid for c in rank_candidates([a, b], "scores")] == [b.grid, a.grid]
    assert [c.grid for c in rank_candidates([a, b], "votes")] == [a.grid, b.grid]
    assert math.isinf(a.mean_score)


def test_select_command_writes_a_valid_scored_submission(tmp_path, capsys):
    from arcsub.cli import main
    from arcsub.submission import load_submission
    from arcsub.tasks import tasks_to_challenges

    a, b = ((1,),), ((2,),)
    task = Task("t", (Pair(((5,),), ((5,),)),), (Pair(((7,),), a),))
    challenges = tmp_path / "challenges.json"
    challenges.write_text(json.dumps(tasks_to_challenges([task])))
    solutions = tmp_path / "solutions.json"
    solutions.write_text(json.dumps({"t": [[[1]]]}))
    store = RunStore(tmp_path / "pred")
    store.save_scores("t", [[Candidate(b, 3, [-0.5], 0, {"id": -3.0}), Candidate(a, 1, [-1.0], 1, {"id": -0.1})]])

    out = tmp_path / "submission.json"
    assert main(["select", str(tmp_path / "pred"), "-o", str(out), "--challenges", str(challenges)]) == 0
    printed = capsys.readouterr().out
    assert "1 task(s) (1 scored, 0 voted, 0 fallback), selection by combined" in printed
    assert "score 1.0000 (1/1 test outputs solved)" in printed
    assert load_submission(out) == {"t": [{"attempt_1": [[1]], "attempt_2": [[2]]}]}

    assert main(["select", str(tmp_path / "pred"), "-o", str(out)]) == 2  # no run.json, no --challenges
    assert "no run.json naming the tasks; pass --challenges" in capsys.readouterr().err


class _DiesOnSecondPiece:
    """The real backend, until the process "dies" in the middle of step 1 (a worker
    killed past its task's deadline)."""

    def __init__(self, backend):
        self.backend, self.name, self.calls = backend, backend.name, 0

    def generate(self, requests):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("killed in the middle of step 1")
        return self.backend.generate(requests)


def test_under_a_deadline_step_1_is_saved_piece_by_piece(tiny_llama_path, default_tokenizer, tmp_path):
    import time

    from arcsub.inference.hf_backend import TransformersBackend

    tasks = load_tasks("arc1/evaluation[6ea4a07e]").tasks  # two test inputs: 2 x 6 prompts, two pieces of 8
    config = small_config(num_augmentations=6, scoring=False, backend="transformers")
    backend = _DiesOnSecondPiece(TransformersBackend(tiny_llama_path, config.inference, progress=False))
    with pytest.raises(RuntimeError, match="killed"):
        infer(tasks, tiny_llama_path, default_tokenizer, config, tmp_path / "run", backend=backend,
              deadline=time.time() + 3600, progress=False)  # fmt: skip
    store = RunStore(tmp_path / "run")
    kept = store.load_sample(tasks[0].id)
    assert [len(per_test) for per_test in kept] == [6, 2]  # the first piece's 8 predictions are on disk
    assert select_attempts(tasks, store).source[tasks[0].id] == "sample"
