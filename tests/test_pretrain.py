"""``arcsub finetune`` at pre-training scale, on real transformers + peft runs of a tiny
random Llama: weighted sources, pairs per prompt, the tokenized ``datasets`` cache,
held-out validation tasks, resume, the fp16 check of the merged model, bad input."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("datasets")

from arcsub.cli import main as cli_main
from arcsub.config import Config, FinetuneConfig
from arcsub.errors import ConfigError, FinetuneError
from arcsub.finetune import attach_lora
from arcsub.finetune.cache import CachedPrompts
from arcsub.finetune.corpus import load_corpus, training_prompts
from arcsub.finetune.data import LeaveOneOut
from arcsub.finetune.loop import TrainingState, step_rng
from arcsub.finetune.mixture import MixedPrompts, Mixture
from arcsub.finetune.sources import SourceSpec, parse_source
from arcsub.finetune.validation import ValidationSet
from arcsub.leakage import read_training_manifest
from arcsub.prompts import IGNORE_INDEX, PromptBuilder
from arcsub.tasks import load_tasks

SMALL = "arc1/training[0d3d703e,25d8a9c8,3c9b0459]"  # 3x3 grids, 4 train pairs each
OTHER = "arc1/training[6150a2bd,67a3c6ac,68b16354,74dd1130]"  # small grids too
FAST = ["--steps", 2, "--max-seq-len", 1024, "--lr", 0.01, "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the 2 cores here are shared (see test_finetune.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args) -> int:
    return cli_main(["finetune", *map(str, args)])


def config_with(**changes) -> Config:
    config = Config()
    values = {"steps": 4, "learning_rate": 1e-2, "warmup_steps": 0, "log_every": 1, "max_seq_len": 1024}
    config.finetune = FinetuneConfig(**(values | changes))
    return config


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def examples_shown(tokenizer, prompt) -> int:
    """Train pairs shown in a tokenized prompt (each has an ``input:`` line; so does the question)."""
    return tokenizer.decode(prompt.input_ids[: prompt.prompt_length]).count("input:\n") - 1


# ---------------------------------------------------------------- sources and mixing


def test_source_specs_parse_with_weights():
    assert parse_source("arc1/training") == SourceSpec("arc1/training", 1.0)
    assert parse_source("arc1/training[:5]@2.5") == SourceSpec("arc1/training[:5]", 2.5)
    assert str(parse_source("re-arc@0.5")) == "re-arc@0.5" and str(parse_source("arc1/training@1")) == "arc1/training"
    for bad in ("arc1/training@0", "arc1/training@-1", "arc1/training@two", "arc1/training@nan", "arc1/training@"):
        with pytest.raises(FinetuneError, match=r"^--data .*: the weight .* is not a positive number"):
            parse_source(bad)


def test_draws_follow_the_weights_and_are_uniform_within_a_source():
    mixture = Mixture([3.0, 1.0], [["a", "b"], ["c"]])
    counts = Counter(mixture.pick(step_rng(0, "offline", 0, micro))[1] for micro in range(20_000))
    assert counts["c"] / 20_000 == pytest.approx(0.25, abs=0.015)
    assert counts["a"] / 20_000 == pytest.approx(0.375, abs=0.015)
    assert counts["b"] / 20_000 == pytest.approx(0.375, abs=0.015)
    heavy = Mixture([1.0, 9.0], [["a", "b"], ["c"]])
    assert Counter(heavy.pick(random.Random(m))[1] for m in range(5_000))["c"] > 4_300


def test_one_source_draws_exactly_as_before(default_tokenizer):
    """Mixing one source consumes no randomness: today's single-dataset runs are unchanged."""
    config = config_with()
    tasks = load_tasks(SMALL).tasks
    sampler = LeaveOneOut(tasks, PromptBuilder(config.prompt, default_tokenizer), config)
    mixed = MixedPrompts(Mixture([1.0], [sampler.task_ids]), [sampler])
    for micro in range(6):
        assert mixed(micro, step_rng(0, "s", 0, micro)) == sampler(micro, step_rng(0, "s", 0, micro))


def test_pairs_per_prompt_draws_that_many_examples(default_tokenizer):
    tasks = load_tasks(SMALL).tasks  # 4 train pairs: 3 examples around each question
    config = config_with(pairs_per_prompt=2)
    sampler = LeaveOneOut(tasks, PromptBuilder(config.prompt, default_tokenizer), config)
    drawn = [sampler(m, random.Random(m)) for m in range(12)]
    assert {examples_shown(default_tokenizer, p) for p in drawn} == {2}
    assert len({tuple(p.input_ids) for p in drawn}) == 12  # a fresh draw each time
    everything = LeaveOneOut(tasks, PromptBuilder(config.prompt, default_tokenizer), config_with())
    assert {examples_shown(default_tokenizer, everything(m, random.Random(m))) for m in range(6)} == {3}
    config.prompt.min_train_pairs = 3
    with pytest.raises(ConfigError, match="finetune.pairs_per_prompt = 2 is below prompt.min_train_pairs = 3"):
        LeaveOneOut(tasks, PromptBuilder(config.prompt, default_tokenizer), config)


# ---------------------------------------------------------------- the tokenized cache


def test_cache_is_built_once_then_reused_and_keyed_by_what_changes_tokens(default_tokenizer, tmp_path):
    config = config_with(variants=3)
    corpus = load_corpus([SMALL, f"{OTHER}@3"], [], config)
    builder = PromptBuilder(config.prompt, default_tokenizer)
    examples, described = training_prompts(corpus, config, builder, cache_dir=tmp_path, progress=False)
    cache = described["cache"]
    assert not cache["reused"] and cache["rows"] == 7 * 3 and cache["variants"] == 3
    assert isinstance(examples, CachedPrompts) and examples.mixture.weights == [1.0, 3.0]
    dataset = examples.dataset
    assert Path(dataset.cache_files[0]["filename"]).parent == tmp_path / cache["key"]  # memory-mapped from there
    for row in dataset.select(range(0, 21, 4)):
        assert row["length"] == len(row["input_ids"]) == len(row["labels"])
        assert all(label == IGNORE_INDEX for label in row["labels"][: row["prompt_length"]])
        assert row["labels"][row["prompt_length"] :] == row["input_ids"][row["prompt_length"] :]
    variants = [tuple(r["input_ids"]) for r in dataset.select(range(3))]
    assert len(set(variants)) == 3  # three augmentations of one task

    again, described_again = training_prompts(corpus, config, builder, cache_dir=tmp_path, progress=False)
    assert described_again["cache"]["reused"] and described_again["cache"]["key"] == cache["key"]
    draws = [examples(m, step_rng(0, "offline", 0, m)) for m in range(8)]
    assert draws == [again(m, step_rng(0, "offline", 0, m)) for m in range(8)]

    reweighted = load_corpus([f"{SMALL}@5", OTHER], [], config)  # weights change the draw, not the tokens
    assert training_prompts(reweighted, config, builder, cache_dir=tmp_path, progress=False)[1]["cache"]["reused"]
    keys = {cache["key"]}
    for changed in (
        config_with(variants=2),
        config_with(variants=3, pairs_per_prompt=2),
        config_with(variants=3, seed=1),
    ):
        fresh = training_prompts(load_corpus([SMALL, OTHER], [], changed), changed, builder, cache_dir=tmp_path,
                                 progress=False)[1]["cache"]  # fmt: skip
        assert not fresh["reused"]
        keys.add(fresh["key"])
    held_out = config_with(variants=3, val_tasks=1)
    fresh = training_prompts(load_corpus([SMALL, OTHER], [], held_out), held_out, builder, cache_dir=tmp_path,
                             progress=False)[1]["cache"]  # fmt: skip
    keys.add(fresh["key"])
    assert len(keys) == 5 and len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 5


def test_the_command_reports_a_reused_cache(tiny_llama_path, tmp_path, caplog):
    common = ["--model", tiny_llama_path, "--data", SMALL, "--variants", 2, "--cache-dir", tmp_path / "cache", *FAST]
    assert run_cli(*common, "--out", tmp_path / "a") == 0
    first = read(tmp_path / "a" / "run.json")["cache"]
    assert not first["reused"] and Path(first["folder"]).parent == tmp_path / "cache"
    with caplog.at_level("INFO", logger="arcsub.finetune"):
        assert run_cli(*common, "--out", tmp_path / "b") == 0
    second = read(tmp_path / "b" / "run.json")["cache"]
    assert second["reused"] and second["key"] == first["key"]
    assert f"data cache reused: {first['folder']}" in caplog.text
    assert run_cli(*common, "--out", tmp_path / "c", "--max-seq-len", 900) == 0
    assert read(tmp_path / "c" / "run.json")["cache"]["key"] != first["key"]


def test_each_process_draws_its_own_prompts(default_tokenizer, tmp_path):
    config = config_with(variants=4)
    corpus = load_corpus([SMALL, OTHER], [], config)
    examples, _ = training_prompts(corpus, config, PromptBuilder(config.prompt, default_tokenizer), cache_dir=tmp_path,
                                   progress=False)  # fmt: skip
    zero = [examples(m, step_rng(0, "offline", 0, m)).input_ids for m in range(16)]
    one = [examples(m, step_rng(0, "offline", 1, m)).input_ids for m in range(16)]
    assert sum(a != b for a, b in zip(zero, one)) >= 12


# ---------------------------------------------------------------- validation


def test_held_out_tasks_are_never_drawn_nor_in_the_trained_set(tiny_llama_path, default_tokenizer, tmp_path):
    out = tmp_path / "run"
    args = ["--model", tiny_llama_path, "--data", SMALL, "--data", f"{OTHER}@2", "--val-tasks", 2,
            "--val-data", "arc1/training[b1948b0a]", "--eval-every", 1, "--out", out, *FAST]  # fmt: skip
    assert run_cli(*args, "--variants", 2, "--cache-dir", tmp_path / "cache", "--merge") == 0
    run = read(out / "run.json")
    held = set(run["held_out"])
    assert len(held) == 3 and "b1948b0a" in held and run["validation"]["prompts"] >= 3
    trained = {t.id for t in load_tasks(SMALL).tasks + load_tasks(OTHER).tasks} - held
    from datasets import Dataset

    rows = Dataset.from_file(str(Path(run["cache"]["folder"]) / "prompts.arrow"))
    assert set(rows["task"]) == trained  # every training task has variants; no held-out one does
    for folder in ("adapter", "merged"):
        manifest = read_training_manifest(out / folder)
        assert manifest.held_out == held and not manifest.task_ids & held
        assert manifest.task_ids == trained and manifest.sources == [SMALL, OTHER]

    result = read(out / "adapter" / "train_result.json")
    assert [step for step, _ in result["val_losses"]] == [1, 2]
    assert result["val_loss"] == result["val_losses"][-1][1] > 0
    assert "val loss" in (out / "logs" / "run.log").read_text()
    state = torch.load(out / "checkpoints" / "step-000002" / "trainer_state.pt", weights_only=True)
    assert state["result"]["val_losses"] == result["val_losses"]  # the run's history keeps them

    config = config_with(val_tasks=2)  # the same draw on the fly
    corpus = load_corpus([SMALL, f"{OTHER}@2"], ["arc1/training[b1948b0a]"], config)
    assert {t.id for t in corpus.validation} == held
    examples, _ = training_prompts(corpus, config, PromptBuilder(config.prompt, default_tokenizer))
    picked = {examples.mixture.pick(random.Random(m))[1] for m in range(400)}
    assert picked == trained


def test_a_copy_of_a_validation_task_under_another_id_is_not_trained_on(tmp_path):
    (task,) = load_tasks("arc1/training[0d3d703e]").tasks
    folder = tmp_path / "generated"
    folder.mkdir()
    (folder / "renamed.json").write_text(json.dumps(task_json(task)))
    for other in load_tasks(OTHER).tasks:
        (folder / f"{other.id}.json").write_text(json.dumps(task_json(other)))
    corpus = load_corpus([str(folder)], [SMALL], config_with())
    assert {t.id for t in corpus.sources[0].tasks} == {t.id for t in load_tasks(OTHER).tasks}
    assert corpus.left_out == 1


def test_excluded_tasks_and_copies_of_them_are_left_out_and_a_source_of_them_alone_fails(tmp_path):
    (task,) = load_tasks("arc1/training[0d3d703e]").tasks
    folder = tmp_path / "generated"
    folder.mkdir()
    (folder / "renamed.json").write_text(json.dumps(task_json(task)))  # a copy under another id
    for other in load_tasks(OTHER).tasks:
        (folder / f"{other.id}.json").write_text(json.dumps(task_json(other)))
    corpus = load_corpus([str(folder)], [], config_with(), exclude=[SMALL])
    assert {t.id for t in corpus.sources[0].tasks} == {t.id for t in load_tasks(OTHER).tasks}
    assert corpus.left_out_excluded == 1 and corpus.describe()["excluded"] == [{"source": SMALL, "tasks": 3}]
    with pytest.raises(FinetuneError, match="every task of it is held out"):
        load_corpus([SMALL], [], config_with(), exclude=[SMALL])


def test_a_task_id_is_trained_from_the_first_source_that_holds_it():
    both = "arc1/training[0d3d703e,6150a2bd]"
    corpus = load_corpus([SMALL, both], [], config_with())
    assert [len(s.tasks) for s in corpus.sources] == [3, 1] and corpus.repeated == 1
    assert corpus.sources[1].tasks[0].id == "6150a2bd"
    with pytest.raises(FinetuneError, match="every task of it is in an earlier source"):
        load_corpus([SMALL, "arc1/training[0d3d703e]"], [], config_with())


def test_the_manifest_records_each_excluded_source_with_none_of_it_seen(tiny_llama_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--model", tiny_llama_path, "--data", f"{SMALL},{OTHER}".replace("],arc1/training[", ","),
                   "--exclude", "arc1/training[0d3d703e]", "--out", out, *FAST) == 0  # fmt: skip
    manifest = read_training_manifest(out / "adapter")
    assert "0d3d703e" not in manifest.task_ids and len(manifest.task_ids) == 6
    assert manifest.excluded == [{"source": "arc1/training[0d3d703e]", "tasks": 1, "seen": 0, "seen_ids": []}]
    assert read(out / "run.json")["left_out_as_excluded"] == 1
    # The run's saved config holds the exclusions: a resume cannot change them.
    assert run_cli("--out", out, "--resume", "--steps", 3, "--exclude", "arc1/evaluation") == 2
    assert "drop --exclude" in capsys.readouterr().err
    # What the guard checks against: the manifest counts a source it was trained on as seen.
    assert manifest.exclude(SMALL, load_tasks(SMALL).tasks)["seen"] == 2


def task_json(task) -> dict:
    def pairs(items):
        return [{"input": [list(r) for r in p.input], "output": [list(r) for r in p.output]} for p in items]

    return {"train": pairs(task.train), "test": pairs(task.test)}


def test_validation_runs_without_gradients_in_eval_mode_then_back(tiny_llama_path, default_tokenizer):
    from transformers import AutoModelForCausalLM

    config = config_with()
    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32), config.finetune)
    validation = ValidationSet.build(load_tasks(SMALL).tasks, PromptBuilder(config.prompt, default_tokenizer), config)
    assert len(validation) == 3 and not validation.too_long
    state = TrainingState.start(model, validation.prompts, config.finetune, 1, "val", None, None)
    modes = []
    model.get_base_model().model.layers[0].register_forward_hook(lambda m, a, o: modes.append(m.training))
    model.train()
    first = validation.evaluate(state)
    assert model.training and modes == [False] * 3
    assert all(p.grad is None for p in model.parameters())
    assert validation.evaluate(state) == pytest.approx(first)  # a fixed set: the same loss twice
    model.eval()
    validation.evaluate(state)
    assert not model.training  # put back as it was


# ---------------------------------------------------------------- resume


def test_resume_with_the_cache_equals_an_uninterrupted_run(tiny_llama_path, tmp_path):
    common = ["--model", tiny_llama_path, "--data", SMALL, "--data", f"{OTHER}@2", "--variants", 3,
              "--grad-accum", 2, "--val-tasks", 1, "--eval-every", 2, "--checkpoint-every", 1,
              "--cache-dir", tmp_path / "cache", "--max-seq-len", 1024, "--lr", 0.01, "--no-progress"]  # fmt: skip
    out = tmp_path / "run"
    assert run_cli(*common, "--out", out, "--steps", 2) == 0
    assert run_cli("--out", out, "--resume", "--data", OTHER) == 2  # not the run's sources
    assert run_cli("--out", out, "--resume", "--steps", 4, "--no-progress") == 0
    assert read(out / "run.json")["cache"]["reused"]  # the resumed run found the run's cache
    resumed = read(out / "adapter" / "train_result.json")
    assert run_cli(*common, "--out", tmp_path / "whole", "--steps", 4) == 0
    whole = read(tmp_path / "whole" / "adapter" / "train_result.json")
    assert resumed["micro_steps"] == whole["micro_steps"] == 8
    assert resumed["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    assert [s for s, _ in resumed["val_losses"]] == [s for s, _ in whole["val_losses"]] == [2, 4]
    assert [v for _, v in resumed["val_losses"]] == pytest.approx([v for _, v in whole["val_losses"]], rel=1e-5)


# ---------------------------------------------------------------- the merged model


def test_the_fp16_check_is_recorded_on_merge(tiny_llama_path, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--model", tiny_llama_path, "--data", SMALL, "--merge", "--out", out, *FAST) == 0
    for folder in ("adapter", "merged"):
        fp16 = read(out / folder / "train_result.json")["fp16"]
        assert fp16["checked"] and fp16["overflow"] is False and fp16["prompts"] == 2
        assert fp16["nonfinite_logits"] == 0 and fp16["max_abs_activation"] < 65504


def test_a_merged_model_that_overflows_in_fp16_fails_loudly(tiny_llama_path, tmp_path, capsys):
    """Weights that push an activation past fp16's 65504 (as a bf16 run at a high
    learning rate once did): the run fails with one line, the outcome recorded."""
    from transformers import AutoModelForCausalLM

    from arcsub.models.loading import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(1e7)
    hot = tmp_path / "hot"
    model.save_pretrained(hot)
    load_tokenizer(tiny_llama_path).save_pretrained(hot)
    out = tmp_path / "run"
    capsys.readouterr()
    assert run_cli("--model", hot, "--data", SMALL, "--merge", "--out", out, *FAST) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("arcsub: error")]
    assert len(errors) == 1 and "overflows in fp16" in errors[0] and "T4" in errors[0]
    fp16 = read(out / "merged" / "train_result.json")["fp16"]
    assert fp16["checked"] and fp16["overflow"] and fp16["max_abs_activation"] > 65504


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", f"{SMALL}@heavy"], "--data arc1/training[0d3d703e,25d8a9c8,3c9b0459]@heavy: the weight 'heavy'"),
        (["--data", "arc9/training"], "--data arc9/training: arc9/training: no such file, folder or dataset"),
        (["--data", SMALL, "--val-data", "no/such"], "--val-data no/such: no/such: no such file"),
        (["--data", SMALL, "--val-tasks", 3], "--val-tasks 3: the training sources hold 3 distinct task(s)"),
        (["--data", SMALL, "--data", SMALL], "--data: arc1/training[0d3d703e,25d8a9c8,3c9b0459] given twice"),
        (["--data", SMALL, "--variants", -1], "finetune.variants = -1; it must not be negative"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(tiny_llama_path, tmp_path, capsys, args, message):
    capsys.readouterr()
    assert run_cli("--model", tiny_llama_path, "--out", tmp_path / "run", *args, *FAST) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("arcsub: error")]
    assert len(errors) == 1 and errors[0].startswith(f"arcsub: error: {message}")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- several processes


def test_the_cached_path_runs_data_parallel_under_accelerate_launch(tiny_llama_path, tmp_path, arcsub_under_accelerate):
    out = tmp_path / "ddp"
    done = arcsub_under_accelerate(
        "finetune", "--model", tiny_llama_path, "--data", SMALL, "--data", f"{OTHER}@2",
        "--variants", 2, "--val-tasks", 1, "--eval-every", 1, "--cache-dir", tmp_path / "cache",
        "--out", out, *FAST,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1  # built once
    result = read(out / "adapter" / "train_result.json")
    assert result["steps"] == 2 and [s for s, _ in result["val_losses"]] == [1, 2]


def test_sources_and_settings_can_come_from_the_config(tiny_llama_path, tmp_path, capsys):
    config = tmp_path / "pretrain.toml"
    config.write_text(f'[finetune]\nsources = ["{SMALL}", "{OTHER}@2"]\npairs_per_prompt = 2\nval_tasks = 1\n')
    out = tmp_path / "run"
    assert run_cli("--model", tiny_llama_path, "--config", config, "--out", out, *FAST) == 0
    run = read(out / "run.json")
    assert run["data"] == [SMALL, f"{OTHER}@2"] and len(run["held_out"]) == 1
    assert [s["weight"] for s in run["sources"]] == [1.0, 2.0]
    saved = (out / "config.toml").read_text()
    assert f'sources = ["{SMALL}", "{OTHER}@2"]' in saved and "pairs_per_prompt = 2" in saved
    config.write_text(f'[finetune]\nsources = ["{SMALL}@0"]\n')
    capsys.readouterr()
    assert run_cli("--model", tiny_llama_path, "--config", config, "--out", tmp_path / "bad", *FAST) == 2
    assert "arcsub: error: finetune.sources arc1/training[0d3d703e,25d8a9c8,3c9b0459]@0: the weight '0'" in (
        capsys.readouterr().err
    )
