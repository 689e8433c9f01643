"""The whole path on the real default model: fallback submission, test-time
fine-tuning, inference (transformers backend, so no engine start), selection, score;
then a rerun that resumes instead of repeating."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from arcsub.cli import build_parser, main
from arcsub.cli.infer import load_run_config
from arcsub.config import Config, load_config, save_config
from arcsub.errors import ArcsubError
from arcsub.inference.store import RunStore
from arcsub.pipeline import run_pipeline
from arcsub.submission import load_submission, validate_submission
from arcsub.tasks import load_tasks, smallest_tasks


def test_run_pipeline_end_to_end_and_resume(default_model_path, tmp_path):
    tasks = smallest_tasks(load_tasks("arc1/evaluation").tasks, 2)
    assert [t.id for t in tasks] == ["be03b35f", "66e6c45b"]  # source order, fewest cells
    config = Config()
    config.finetune.steps = 2
    config.finetune.lora_rank = 8
    config.inference.backend = "transformers"
    config.inference.num_augmentations = 2
    config.inference.score_augmentations = 2
    config.inference.max_candidates = 2

    result = run_pipeline(tasks, default_model_path, config, tmp_path, data_label="smallest 2", progress=False)
    submission = load_submission(tmp_path / "submission.json")
    assert validate_submission(submission, tasks) == []
    assert result.score is not None and result.score.total == 2
    for task in tasks:
        assert (tmp_path / "adapters" / task.id / "adapter_config.json").is_file()
        assert result.trained[task.id]["steps"] == 2
        assert (tmp_path / "predictions" / "sample" / f"{task.id}.json").is_file()
        assert (tmp_path / "predictions" / "score" / f"{task.id}.json").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["seconds"]) == {"fallback", "finetune", "inference"}
    assert "[finetune]" in (tmp_path / "config.toml").read_text()

    adapter = tmp_path / "adapters" / tasks[0].id / "adapter_model.safetensors"
    before = adapter.stat().st_mtime_ns
    again = run_pipeline(tasks, default_model_path, config, tmp_path, data_label="smallest 2", progress=False)
    assert adapter.stat().st_mtime_ns == before  # not trained again
    assert "sampled 0 task(s), scored 0, reused 2" in again.inference
    assert load_submission(tmp_path / "submission.json") == submission

    config.finetune.steps = 3  # the adapters on disk were trained with 2
    with pytest.raises(ArcsubError, match=r"trained with finetune.steps = 2, now 3; use another `out`"):
        run_pipeline(tasks, default_model_path, config, tmp_path, data_label="smallest 2", progress=False)
    assert load_submission(tmp_path / "submission.json") == submission


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "options",
    [
        ["--ttft-steps", "0"],
        ["--ttft-steps", "3", "--samples", "2", "--temperature", "0.7", "--no-scoring", "--augmentations", "3"],
        ["--config", str(ROOT / "configs" / "cpu-smoke.toml"), "--max-model-len", "2048", "--backend", "transformers"],
    ],
)
def test_every_config_run_saves_loads_back_equal(options, tmp_path):
    config = load_run_config(build_parser().parse_args(["run", *options, "--out", str(tmp_path)]))
    assert load_config(save_config(config, tmp_path / "config.toml")) == config


def tiny_run_config(**finetune) -> Config:
    config = Config()
    config.finetune = dataclasses.replace(config.finetune, steps=2, lora_rank=4, **finetune)
    config.inference.backend = "transformers"
    config.inference.num_augmentations = 2
    config.inference.score_augmentations = 2
    config.inference.max_candidates = 2
    return config


def test_run_without_fine_tuning_saves_a_config_that_reproduces_it(tiny_llama_path, tmp_path, capsys):
    """``arcsub run --ttft-steps 0`` on a tiny model: no adapters, a config.toml that
    loads back with ``finetune.steps = 0``, engine output in OUT/logs/run.log."""
    task = smallest_tasks(load_tasks("arc1/evaluation").tasks, 1)[0]
    out = tmp_path / "run"
    argv = ["run", "--model", str(tiny_llama_path), "--data", f"arc1/evaluation[{task.id}]", "--out", str(out),
            "--ttft-steps", "0", "--backend", "transformers", "--augmentations", "2", "--no-scoring"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert load_config(out / "config.toml").finetune.steps == 0
    assert not (out / "adapters").exists()
    assert validate_submission(load_submission(out / "submission.json"), [task]) == []
    assert f"engine logs: {out / 'logs' / 'run.log'}" in printed.err and "score " in printed.out
    assert "arcsub.inference" in (out / "logs" / "run.log").read_text()  # arcsub's own lines are kept there too
    assert main(argv) == 0  # the saved config is the one a rerun checks against: it resumes


BAR = r"(fine-tuning|sampling|scoring):\s+\d+%\|"  # a drawn tqdm bar: "sampling:  50%|#####     | 1/2"


def test_progress_false_quiets_every_stage(tiny_llama_path, tmp_path, fake_terminal):
    tasks = smallest_tasks(load_tasks("arc1/evaluation").tasks, 1)
    config = tiny_run_config()
    run_pipeline(tasks, tiny_llama_path, config, tmp_path / "quiet", progress=False)
    quiet = fake_terminal.getvalue()
    assert not re.search(BAR, quiet), quiet  # arcsub's lines only
    run_pipeline(tasks, tiny_llama_path, config, tmp_path / "shown", progress=True)
    shown = fake_terminal.getvalue()[len(quiet) :]
    predictions = RunStore(tmp_path / "shown" / "predictions").load_sample(tasks[0].id)
    scored = any(p.grid is not None for per_test in predictions for p in per_test)  # a random model may parse none
    expected = {"fine-tuning", "sampling"} | ({"scoring"} if scored else set())
    assert {m.group(1) for m in re.finditer(BAR, shown)} == expected, shown
