"""Config-faithful replicas: the candidate's class, heads, RoPE and tokens, smaller."""

from __future__ import annotations

import pytest

from arcsub.errors import ModelPreparationError
from arcsub.models import config_facts as facts
from arcsub.models.registry import get_candidate
from arcsub.models.replicas import build_replica, replica_names


@pytest.mark.parametrize("name", replica_names())
def test_replica_keeps_what_the_code_paths_depend_on(replica, name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    candidate = get_candidate(name)
    path = replica(name)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    cfg = model.config.to_dict()
    published = candidate.config

    assert type(model).__name__ == candidate.architecture
    assert facts.layer_heads(cfg) == [(published["num_attention_heads"], published["num_key_value_heads"])] * 2
    assert cfg["max_position_embeddings"] == published["max_position_embeddings"]
    assert model.config.rope_parameters["rope_theta"] == published["rope_theta"]
    assert facts.sliding_window(cfg) == facts.sliding_window(published)
    assert facts.tied_embeddings(cfg) == facts.tied_embeddings(published)
    assert facts.tensor_parallel_blockers(cfg, 2) == facts.tensor_parallel_blockers(published, 2)
    assert bool(tokenizer.chat_template) == bool(candidate.tokenizer.chat_template)
    assert tokenizer.eos_token == candidate.tokenizer.eos
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert model.config.vocab_size == len(tokenizer)
    for token in candidate.tokenizer.special_tokens:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    # Digits are one token each, as in the originals (the grid codec relies on it).
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("0123456789", add_special_tokens=False)["input_ids"])
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("0123456789")
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer("input:\n12\n34", add_special_tokens=False)["input_ids"]])).logits
    assert logits.shape[-1] == len(tokenizer) and torch.isfinite(logits).all()


def test_openelm_cannot_be_replicated(tmp_path):
    with pytest.raises(ModelPreparationError, match="remote code"):
        build_replica("OpenELM-270M", tmp_path / "openelm")
    assert not (tmp_path / "openelm").exists()


def test_candidates_with_unchecked_facts_are_not_replicated(tmp_path):
    with pytest.raises(ModelPreparationError, match="vocab_size"):
        build_replica("NanoLM-365M-Base", tmp_path / "nano")


def test_replica_cli_refuses_an_existing_destination(tmp_path, capsys):
    from arcsub.cli import main

    (tmp_path / "taken").mkdir()
    assert main(["model", "replica", "TinyMistral-248M", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
