"""Candidate registry, config arithmetic and `arcsub model inspect`."""

from __future__ import annotations

import json

import pytest

from arcsub.cli import main
from arcsub.models import config_facts as facts
from arcsub.models.inspection import (
    GIB,
    candidate_facts,
    fact_rows,
    folder_facts,
    markdown_table,
    published_count,
    t4_estimate,
)
from arcsub.models.registry import CANDIDATES, CANDIDATES_FILE, RegistryError, get_candidate, read_candidates

FULLY_KNOWN = [c for c in CANDIDATES if not c.unknown]


@pytest.mark.parametrize("candidate", FULLY_KNOWN, ids=lambda c: c.name)
def test_parameters_from_config_match_the_published_size(candidate):
    derived = facts.count_parameters(candidate.config)
    published = published_count(candidate.published_params)
    assert derived is not None and published is not None
    assert abs(derived - published) / published < 0.03, (derived, published)


def test_exact_parameter_counts_of_known_models():
    # Published exact counts: SmolLM2-135M 134,515,008; Qwen2.5-0.5B 494,032,768.
    assert facts.count_parameters(get_candidate("SmolLM2-135M-Instruct").config) == 134_515_008
    assert facts.count_parameters(get_candidate("Qwen2.5-0.5B-Instruct").config) == 494_032_768


def test_unknown_facts_stay_unknown():
    nano = candidate_facts(get_candidate("NanoLM-365M-Base"))
    rows = dict(fact_rows(nano, 8192))
    assert nano.params is None
    for fact in ("max_position_embeddings", "vocabulary", "tied embeddings", "RoPE", "chat template"):
        assert rows[fact].startswith("unknown"), (fact, rows[fact])
    assert rows["parameters"] == "unknown; published 365M"
    assert "(published count)" in rows["T4 fp16 weights"]  # the estimate says where its count came from


def test_tensor_parallel_blockers_follow_vllm_rules():
    smol = get_candidate("SmolLM2-135M-Instruct").config
    assert facts.tensor_parallel_blockers(smol, 2) == [
        "9 attention heads not divisible by 2",
        "3 key/value heads not divisible by 2",
    ]
    assert facts.tensor_parallel_blockers(get_candidate("Qwen2.5-0.5B-Instruct").config, 2) == []
    # OpenELM varies heads per layer: 12/16/20 query heads divide, 3 and 5 kv heads do not.
    assert facts.tensor_parallel_blockers(get_candidate("OpenELM-270M").config, 2) == [
        "3 key/value heads not divisible by 2",
        "5 key/value heads not divisible by 2",
    ]
    # Fewer kv heads than GPUs are replicated by vLLM when the GPU count divides by them.
    mqa = {"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 1}
    assert facts.tensor_parallel_blockers(mqa, 2) == []
    assert facts.tensor_parallel_blockers({**mqa, "num_key_value_heads": 3}, 4) == [
        "3 key/value heads not divisible by 4"
    ]


def test_t4_estimate_arithmetic():
    smol = get_candidate("SmolLM2-135M-Instruct").config
    assert facts.kv_cache_bytes_per_token(smol) == 2 * 30 * 3 * 64 * 2
    estimate = t4_estimate(134_515_008, smol, 8192)
    assert estimate.weights_bytes == 2 * 134_515_008
    assert estimate.kv_bytes == 2 * 30 * 3 * 64 * 2 * 8192
    assert estimate.fits and estimate.sequences > 10
    # A 7B-class shape with full multi-head attention does not fit one sequence of 32k.
    big = {"num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4096, "head_dim": 128}
    heavy = t4_estimate(7_000_000_000, big, 32768)
    assert not heavy.fits and heavy.sequences == 0
    assert heavy.kv_bytes == 2 * 32 * 32 * 128 * 2 * 32768 > 15 * GIB


def test_candidate_table_has_every_candidate_and_rectangular_rows():
    items = [candidate_facts(c) for c in CANDIDATES]
    table = markdown_table(items, 8192).splitlines()
    cells = [line.replace("\\|", "").count("|") for line in table]
    assert len(set(cells)) == 1 and cells[0] == len(CANDIDATES) + 2
    rows = {line.split("|")[1].strip(): line for line in table}
    assert "no (not in vLLM's model registry; remote code only)" in rows["vLLM serves it"]
    assert rows["vLLM serves it"].count("| yes") == len(CANDIDATES) - 1


def test_inspect_cli_candidates_and_errors(capsys):
    assert main(["model", "inspect", "--candidates", "--max-model-len", "16384"]) == 0
    out = capsys.readouterr().out
    assert "T4 KV cache, 1 × 16384 tokens" in out and "OpenELM-270M" in out
    assert main(["model", "inspect", "NoSuchModel-1B"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NoSuchModel-1B" in err and "SmolLM2-360M-Instruct" in err
    assert main(["model", "inspect"]) == 2


def test_local_folder_facts_of_the_default_model(default_model_path):
    item = folder_facts(default_model_path)
    assert item.params == 134_515_008 and item.params_from == "weights"
    # The weight count agrees with the arithmetic on the folder's own config.json.
    assert facts.count_parameters(json.loads((default_model_path / "config.json").read_text())) == item.params
    assert item.chat_template is True and item.eos == "<|im_end|>" and item.tokenizer_size == 49152
    assert 1.0 < item.max_abs_weight < 65504
    assert item.vllm is True
    rows = dict(fact_rows(item, 8192))
    assert rows["TP=2 on vLLM"].startswith("no: 9 attention heads")
    assert rows["RoPE"] == "theta 100000"


def test_registry_vllm_flags_match_the_installed_vllm():
    from vllm.model_executor.models.registry import ModelRegistry

    served = ModelRegistry.get_supported_archs()
    for candidate in CANDIDATES:
        assert (candidate.architecture in served) == candidate.vllm, candidate.name


def test_the_facts_are_data_read_strictly(tmp_path):
    assert read_candidates() == CANDIDATES and len(CANDIDATES) == 8
    smol = get_candidate("SmolLM2-135M-Instruct")
    assert smol.config["rope_scaling"] is None and "rope_scaling" not in get_candidate("TinyMistral-248M").config
    assert smol.tokenizer.special_tokens == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    assert get_candidate("TinyMistral-248M").tokenizer.chat_template is None  # missing: unknown

    text = CANDIDATES_FILE.read_text()
    edited = tmp_path / "candidates.toml"
    edited.write_text(text.replace('published_params = "135M"', 'published_params = "135M"\nparams = 1', 1))
    with pytest.raises(RegistryError, match="candidate 'AMD-Llama-135m': unknown key\\(s\\) params"):
        read_candidates(edited)
    edited.write_text(text.replace('tokenizer = "llama2"', 'tokenizer = "llama3"', 1))
    with pytest.raises(RegistryError, match="tokenizer 'llama3' is not one of"):
        read_candidates(edited)
    edited.write_text(text.replace('repo = "amd/AMD-Llama-135m"\n', "", 1))
    with pytest.raises(RegistryError, match="'AMD-Llama-135m': repo is missing"):
        read_candidates(edited)
