"""`arcsub model extend-context`: config and tokenizer change, weights linked, refusals."""

from __future__ import annotations

import json
import os

import pytest

from arcsub.cli import main
from arcsub.errors import ModelPreparationError
from arcsub.models.context import extend_context

FAMILIES = ["AMD-Llama-135m", "TinyMistral-248M", "Qwen2.5-0.5B-Instruct"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix != ".safetensors"}


@pytest.mark.parametrize("name", FAMILIES)
def test_theta_extension_changes_config_and_tokenizer_only(replica, tmp_path, name):
    from transformers import AutoConfig, AutoTokenizer

    src = replica(name)
    before = _snapshot(src)
    old_window = json.loads((src / "config.json").read_text())["max_position_embeddings"]
    target = max(2 * old_window, 4096)
    result = extend_context(src, tmp_path / "long", max_len=target, rope_theta=4e5)

    config = AutoConfig.from_pretrained(tmp_path / "long")
    assert config.max_position_embeddings == target
    assert config.rope_parameters["rope_theta"] == 4e5 and config.rope_parameters["rope_type"] == "default"
    assert AutoTokenizer.from_pretrained(tmp_path / "long").model_max_length == target
    assert result.linked == ["model.safetensors"] and not result.copied
    assert os.path.samefile(src / "model.safetensors", tmp_path / "long" / "model.safetensors")
    assert _snapshot(src) == before  # the source is untouched
    written = json.loads((tmp_path / "long" / "config.json").read_text())
    assert written["rope_theta"] == 4e5 and written["rope_scaling"] is None  # mirrored for older readers
    if name == "TinyMistral-248M":
        assert any("sliding_window 32" in note for note in result.notes)


def test_extension_changes_the_window_the_engines_enforce_and_the_logits(replica, tmp_path):
    """Against the unextended model: the training budget check refuses 3000 tokens on
    the original (window 2048) and accepts them on the copy, and the new RoPE base
    changes the logits of the same input (the weights are the same file)."""
    import torch
    from transformers import AutoModelForCausalLM

    from arcsub.config import Config
    from arcsub.errors import ConfigError
    from arcsub.finetune.ttft import check_window
    from arcsub.models.loading import model_window

    src, long = replica("AMD-Llama-135m"), tmp_path / "long"  # theta 1e4, window 2048
    extend_context(src, long, max_len=4096, rope_theta=1e5)
    assert (model_window(src), model_window(long)) == (2048, 4096)
    config = Config()
    config.finetune.max_seq_len = 3000
    original = AutoModelForCausalLM.from_pretrained(src).eval()
    extended = AutoModelForCausalLM.from_pretrained(long).eval()
    with pytest.raises(ConfigError, match="exceeds the model's window of 2048 tokens"):
        check_window(original, config)
    assert check_window(extended, config) == 3000
    ids = torch.randint(3, 700, (1, 3000), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = (model(ids, logits_to_keep=4).logits for model in (original, extended))
    assert torch.isfinite(after).all()
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("scaling", "factor", "window", "extra"),
    [
        ("linear", None, 2048, {"factor": 2.0}),
        ("dynamic", 3.0, 2048, {"factor": 3.0}),
        ("yarn", None, 4096, {"factor": 2.0, "original_max_position_embeddings": 2048}),
    ],
)
def test_rope_scaling_variants(replica, tmp_path, scaling, factor, window, extra):
    from transformers import AutoConfig

    result = extend_context(replica("AMD-Llama-135m"), tmp_path / scaling, max_len=4096, scaling=scaling, factor=factor)
    config = AutoConfig.from_pretrained(tmp_path / scaling)
    assert config.max_position_embeddings == window  # linear/dynamic keep the trained window (vLLM scales it)
    assert config.rope_parameters["rope_type"] == scaling
    for key, value in extra.items():
        assert config.rope_parameters[key] == value
    assert result.new_window == 4096


def test_refusals(replica, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    src = replica("AMD-Llama-135m")
    with pytest.raises(ModelPreparationError, match="shorter than the model's window of 2048"):
        extend_context(src, tmp_path / "short", max_len=1024, rope_theta=1e5)
    with pytest.raises(ModelPreparationError, match="nothing|no RoPE change"):
        extend_context(src, tmp_path / "same", max_len=2048)
    with pytest.raises(ModelPreparationError, match="exceeds 2048 × factor 1.5"):
        extend_context(src, tmp_path / "small-factor", max_len=4096, scaling="linear", factor=1.5)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ModelPreparationError, match="already exists"):
        extend_context(src, tmp_path / "taken", max_len=4096, rope_theta=1e5)

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=256)).save_pretrained(gpt2)
    with pytest.raises(ModelPreparationError, match="no rotary position embeddings"):
        extend_context(gpt2, tmp_path / "gpt2-long", max_len=1024, rope_theta=1e5)

    extend_context(src, tmp_path / "scaled", max_len=4096, scaling="linear")
    with pytest.raises(ModelPreparationError, match="already uses linear RoPE scaling"):
        extend_context(tmp_path / "scaled", tmp_path / "twice", max_len=8192, scaling="linear")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # refused runs leave no temp folders


def test_extend_context_cli(replica, tmp_path, capsys):
    src = replica("SmolLM2-135M-Instruct")
    args = ["model", "extend-context", str(src), str(tmp_path / "long"), "--max-len", "16384", "--rope-theta", "4e5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "window 8192 -> 16384" in out and "hard-linked model.safetensors" in out
    assert main(["model", "extend-context", str(src), str(tmp_path / "x"), "--max-len", "4096"]) == 2
    assert "shorter than the model's window" in capsys.readouterr().err


def test_vllm_reads_the_new_window(replica, tmp_path):
    """vLLM derives max_model_len from config.json (scaled by linear factors) and
    the tokenizer's model_max_length: every variant must come out at the target, and
    arcsub's one ``model_window`` (training budget, engine length) must agree."""
    from vllm.config import ModelConfig

    from arcsub.models.loading import model_window

    src = replica("SmolLM2-135M-Instruct")
    extend_context(src, tmp_path / "theta", max_len=16384, rope_theta=4e5)
    for scaling in ("linear", "dynamic", "yarn"):
        extend_context(src, tmp_path / scaling, max_len=16384, scaling=scaling)
    for variant in ("theta", "linear", "dynamic", "yarn"):
        config = ModelConfig(model=str(tmp_path / variant))
        assert config.max_model_len == model_window(tmp_path / variant) == 16384, variant
    assert ModelConfig(model=str(tmp_path / "theta")).hf_config.rope_parameters["rope_theta"] == 4e5
    assert ModelConfig(model=str(src)).max_model_len == 8192


def test_extend_the_default_model(default_model_path, tmp_path):
    from transformers import AutoConfig

    result = extend_context(default_model_path, tmp_path / "d16k", max_len=16384, rope_theta=4e5)
    assert (result.old_window, result.new_window) == (8192, 16384)
    assert AutoConfig.from_pretrained(tmp_path / "d16k").rope_parameters["rope_theta"] == 4e5
    assert os.path.samefile(default_model_path / "model.safetensors", tmp_path / "d16k" / "model.safetensors")
