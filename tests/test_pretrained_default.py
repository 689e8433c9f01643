"""The embedded default pre-trained on ARC: the shipped adapter (package data), merged
into the converted chat model on first use, cached, known to the leakage guard."""

from __future__ import annotations

import json
import shutil

import pytest

from arcsub.models import pretrained, resolve_model
from arcsub.models.default import STAMP_FILE, cache_root


@pytest.fixture(scope="session")
def pretrained_default_path():
    return resolve_model("default", notify=lambda message: None)


def test_the_shipped_adapter_is_small_fp16_and_says_how_it_was_made():
    from safetensors import safe_open

    adapter = pretrained.shipped_adapter()
    weights = adapter / pretrained.ADAPTER_WEIGHTS
    assert weights.stat().st_size <= pretrained.MAX_ADAPTER_BYTES
    with safe_open(weights, "pt") as tensors:
        dtypes = {str(tensors.get_tensor(name).dtype) for name in tensors.keys()}  # noqa: SIM118
    assert dtypes == {"torch.float16"}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct" and "/" not in config["base_model_name_or_path"]
    assert "scripts/pretrain-default.sh --recipe shipped" in (adapter / "RECIPE.md").read_text()
    manifest = json.loads((adapter / "arcsub-training.json").read_text())
    assert manifest["sources"] == ["arc1/training"]


def test_the_shipped_manifest_proves_every_evaluation_set_excluded():
    """Recounted here by the guard, not read off the manifest's own counts."""
    from arcsub.leakage import read_training_manifest, seen_tasks
    from arcsub.tasks import load_tasks

    manifest = read_training_manifest(pretrained.shipped_adapter())
    recorded = {entry["source"]: entry["seen"] for entry in manifest.excluded}
    assert recorded == {"arc1/evaluation": 0, "arc2/evaluation": 0}
    for source in recorded:
        assert seen_tasks(load_tasks(source).tasks, manifest) == []
    assert "40853293" not in manifest.task_ids  # the copy of arc1/evaluation 070dd51e


def test_default_is_the_merged_pretrained_model_and_default_chat_the_chat_model(
    pretrained_default_path, default_model_path
):
    from safetensors.torch import load_file

    assert pretrained_default_path.name == pretrained.MERGED_DIRNAME
    assert resolve_model("default-chat") == default_model_path
    merged, chat = (
        load_file(pretrained_default_path / "model.safetensors"),
        load_file(default_model_path / "model.safetensors"),
    )
    assert merged.keys() == chat.keys()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert merged[name].dtype == chat[name].dtype and not merged[name].equal(chat[name])  # the adapter is in
    assert merged["model.embed_tokens.weight"].equal(chat["model.embed_tokens.weight"])  # embeddings never train
    before = (pretrained_default_path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("default") == pretrained_default_path  # cached: not merged again
    assert (pretrained_default_path / "model.safetensors").stat().st_mtime_ns == before


def test_the_leakage_guard_knows_what_the_default_was_pretrained_on(pretrained_default_path):
    from arcsub.leakage import LeakageError, guard_evaluation
    from arcsub.tasks import load_tasks, smallest_tasks

    training = load_tasks("arc1/training").tasks
    trained = set(json.loads((pretrained_default_path / "arcsub-training.json").read_text())["task_ids"])
    with pytest.raises(LeakageError, match="trained on"):
        guard_evaluation([t for t in training if t.id in trained][:3], pretrained_default_path)
    held_out = smallest_tasks(load_tasks("arc1/evaluation").tasks, 10)
    assert guard_evaluation(held_out, pretrained_default_path) == []


def test_a_stale_merge_is_redone(monkeypatch, pretrained_default_path):
    name = "test-stale-merge"
    stale = cache_root() / "models" / name
    shutil.rmtree(stale, ignore_errors=True)
    stale.mkdir(parents=True)
    (stale / "junk.bin").write_text("x")
    (stale / STAMP_FILE).write_text(json.dumps({"merger_version": 0}))
    monkeypatch.setattr(pretrained, "MERGED_DIRNAME", name)
    try:
        rebuilt = pretrained.pretrained_default_dir(notify=lambda m: None)
        assert rebuilt == stale and not (stale / "junk.bin").exists()
        assert json.loads((stale / STAMP_FILE).read_text())["merger_version"] == pretrained.MERGER_VERSION
        assert (stale / "arcsub-training.json").read_bytes() == (
            pretrained_default_path / "arcsub-training.json"
        ).read_bytes()
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def test_a_new_manifest_alone_makes_the_cached_merge_stale(tmp_path, default_model_path):
    """The merged folder carries the manifest the leakage guard reads: a retrain that
    changes only the manifest must not leave the old copy in the cache."""
    adapter = tmp_path / "adapter"
    shutil.copytree(pretrained.shipped_adapter(), adapter)
    before = pretrained._wanted_stamp(default_model_path, adapter)
    manifest = json.loads((adapter / "arcsub-training.json").read_text())
    (adapter / "arcsub-training.json").write_text(json.dumps({**manifest, "excluded": []}))
    assert pretrained._wanted_stamp(default_model_path, adapter) != before


def test_packing_an_adapter_halves_it_and_refuses_one_too_large(tmp_path):
    from arcsub.errors import FinetuneError
    from arcsub.finetune.adapters import pack_adapter

    source = pretrained.shipped_adapter()
    options = {"recipe": "recipe\n", "base_name": "Base", "max_bytes": pretrained.MAX_ADAPTER_BYTES}
    dest = pack_adapter(source, tmp_path / "shipped", **options)
    assert (dest / "RECIPE.md").read_text() == "recipe\n"
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == "Base"
    assert (dest / pretrained.ADAPTER_WEIGHTS).stat().st_size == (source / pretrained.ADAPTER_WEIGHTS).stat().st_size
    with pytest.raises(FinetuneError, match=r"over the .* cap; train a lower --rank"):
        pack_adapter(source, tmp_path / "too-big", **{**options, "max_bytes": 1000})
    assert not (tmp_path / "too-big").exists()  # nothing half-written
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FinetuneError, match="pass the adapter/ folder"):
        pack_adapter(empty, tmp_path / "none", **options)
