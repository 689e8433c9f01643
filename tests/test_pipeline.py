"""The whole path on the real default model: fallback submission, test-time
fine-tuning, inference (transformers backend, so no engine start), selection, score;
then a rerun that resumes instead of repeating."""

import json

import pytest

from arcsub.config import Config
from arcsub.errors import ArcsubError
from arcsub.pipeline import run_pipeline, smallest_tasks
from arcsub.submission import load_submission, validate_submission
from arcsub.tasks import load_tasks


def test_run_pipeline_end_to_end_and_resume(default_model_path, tmp_path):
    tasks = smallest_tasks(load_tasks("arc1/evaluation").tasks, 2)
    assert [t.id for t in tasks] == ["be03b35f", "66e6c45b"]  # source order, fewest cells
    config = Config()
    config.finetune.steps = 2
    config.finetune.lora_rank = 8
    config.finetune.progress = False
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
    with pytest.raises(ArcsubError, match=r"trained with finetune.steps = 2, now 3; use another --out"):
        run_pipeline(tasks, default_model_path, config, tmp_path, data_label="smallest 2", progress=False)
    assert load_submission(tmp_path / "submission.json") == submission
