"""The leakage guard: training manifests, overlap by id and by copied grids, refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arcsub.cli import main as cli_main
from arcsub.leakage import (
    TRAINING_MANIFEST,
    LeakageError,
    TrainingManifest,
    guard_evaluation,
    read_training_manifest,
    seen_tasks,
    write_training_manifest,
)
from arcsub.tasks import Task, load_tasks


def manifest_of(source: str) -> TrainingManifest:
    manifest = TrainingManifest()
    manifest.add(source, load_tasks(source).tasks)
    return manifest


def test_the_named_datasets_overlap_as_measured():
    arc1_eval = load_tasks("arc1/evaluation").tasks
    seen = seen_tasks(arc1_eval, manifest_of("arc2/training"))
    assert len(seen) == 376 and all(s.how == "id" for s in seen)
    assert [s.task_id for s in seen_tasks(arc1_eval, manifest_of("arc1/training"))] == ["070dd51e"]
    assert len(seen_tasks(load_tasks("arc2/evaluation").tasks, manifest_of("arc1/evaluation"))) == 6


def test_a_copy_under_another_id_is_seen_but_one_shared_grid_is_not():
    (task,) = load_tasks("arc1/evaluation[00576224]").tasks
    manifest = TrainingManifest()
    manifest.add("mine", [Task("renamed", task.train, task.test)])
    assert [(s.task_id, s.how) for s in seen_tasks([task], manifest)] == [("00576224", "grids")]
    partial = TrainingManifest()
    partial.add("mine", [Task("other", task.train[:1], ())])
    assert seen_tasks([task], partial) == []


def test_the_manifest_round_trips_and_a_broken_one_is_named(tmp_path):
    manifest = manifest_of("arc1/training[:3]")
    write_training_manifest(tmp_path, manifest)
    again = read_training_manifest(tmp_path)
    assert again.to_json() == manifest.to_json()
    assert read_training_manifest(tmp_path / "none") is None
    (tmp_path / TRAINING_MANIFEST).write_text("{")
    with pytest.raises(LeakageError, match=f"{TRAINING_MANIFEST}: not valid JSON .*; restore it or retrain"):
        read_training_manifest(tmp_path)
    (tmp_path / TRAINING_MANIFEST).write_text("[]")
    with pytest.raises(LeakageError, match=f"{TRAINING_MANIFEST}: unreadable training manifest"):
        read_training_manifest(tmp_path)


def test_the_guard_refuses_unless_told(tmp_path):
    write_training_manifest(tmp_path, manifest_of("arc2/training"))
    tasks = load_tasks("arc1/evaluation[:20]").tasks
    with pytest.raises(LeakageError, match=r"trained on 20 of these 20 tasks \(20 by id, .*`allow_overlap`"):
        guard_evaluation(tasks, tmp_path)
    assert len(guard_evaluation(tasks, tmp_path, allow_overlap=True)) == 20
    assert guard_evaluation(tasks, tmp_path / "no-manifest") == []


def test_arcsub_run_refuses_a_model_trained_on_the_tasks(tmp_path, tiny_llama_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for item in Path(tiny_llama_path).iterdir():
        (model / item.name).symlink_to(item)
    write_training_manifest(model, manifest_of("arc2/training"))
    code = cli_main(["run", "--model", str(model), "--data", "arc1/evaluation[:3]", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "--allow-overlap" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything ran
    assert json.loads((model / TRAINING_MANIFEST).read_text())["sources"] == ["arc2/training"]
