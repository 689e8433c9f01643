"""Session fixtures shared by the suite: model conversion and loads happen once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def default_model_path():
    """The converted embedded default model (SmolLM2-135M-Instruct, fp32 HF folder)."""
    from arcsub.models.default import default_model_dir

    return default_model_dir(progress=lambda message: None)


@pytest.fixture(scope="session")
def default_tokenizer(default_model_path):
    from arcsub.models.loading import load_tokenizer

    return load_tokenizer(default_model_path)


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory, default_model_path, default_tokenizer):
    """A random-weight Llama with the default model's tokenizer and chat template:
    the same code paths as the real model at a fraction of the cost."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(default_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=default_tokenizer.bos_token_id,
        eos_token_id=default_tokenizer.eos_token_id,
        pad_token_id=default_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    default_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def eval_tasks():
    from arcsub.tasks import load_tasks

    return load_tasks("arc1/evaluation").tasks
