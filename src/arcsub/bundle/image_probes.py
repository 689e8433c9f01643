"""What ``arcsub bundle check --over-image`` runs inside the replica once the kernel has
installed the bundle there: ``python -m arcsub.bundle.image_probes PROBE --result FILE
[--model DIR] [--config FILE] [--work DIR]``. Each probe does one thing with the
installed stack through arcsub's own code and writes what it found as JSON; an
exception is the failure (its traceback on stderr). This module imports torch,
transformers, peft and vLLM, so it only ever runs in the replica's interpreter.

* ``imports``: the stack imports; versions, CUDA build, vLLM's platform, and which
  distributions the imports loaded (the check compares them with the wheel set).
* ``lora``: ``arcsub.finetune.load_for_training`` attaches a LoRA to the model (every
  LoRA creation reaches peft's torchao check), one training step on the smallest
  ARC task, the adapter saved as the kernel saves it.
* ``vllm``: vLLM builds its model config from arcsub's own engine arguments (for this
  machine, and for a T4 and an L4: their dtype, attention backend, and the worker
  environment's variables, each one vLLM must read), loads the tokenizer and renders
  arcsub's prompt with the chat template (token ids compared with arcsub's
  ``PromptBuilder``), reads the adapter's config (``PEFTHelper``) and checks it against
  the LoRA config, and builds the request objects arcsub sends. No engine starts: on a
  CUDA build without a GPU that cannot run (listed in ``GPU_ONLY``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STACK = ("torch", "transformers", "peft", "accelerate", "vllm", "numpy", "arcsub")
GPU_ONLY = (
    "the engine config (device selection: without a GPU vLLM resolves no platform; the error is recorded)",
    "engine start (vllm.LLM: the CUDA platform, worker processes, the model's weights on the GPU)",
    "attention backend selection (TRITON_ATTN on a T4) and CUDA graph capture (enforce_eager off)",
    "CUDA kernels: vLLM's _C ops, FlashInfer, Triton JIT compilation",
    "LoRA serving: punica kernels, adapter weights loaded into GPU slots",
    "fp16 training on a T4 (the replica trains in fp32 on CPU) and the KV cache's GPU memory check",
)


def _distributions_loaded() -> dict[str, str]:
    """Distribution -> version for every loaded top-level module (what the imports pulled
    in). Where several distributions install the same top-level name (``cv2``: the
    image's opencv-python and opencv-contrib-python, the set's opencv-python-headless),
    the one whose record's hash matches the loaded file on disk is the one loaded."""
    from importlib import metadata

    owners = metadata.packages_distributions()
    loaded = {}
    for top in sorted({name.split(".")[0] for name in list(sys.modules)}):
        candidates = owners.get(top, [])
        if len(candidates) > 1:
            candidates = _owners_of_file(sys.modules.get(top), candidates) or candidates
        for dist in candidates:
            try:
                loaded[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return dict(sorted(loaded.items()))


def _owners_of_file(module, candidates: list[str]) -> list[str]:
    import base64
    import hashlib
    from importlib import metadata

    path = Path(getattr(module, "__file__", None) or "")
    if not path.is_file():
        return []
    digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    found = []
    for name in candidates:
        for entry in metadata.distribution(name).files or []:
            if (
                entry.hash is not None
                and f"{entry.hash.mode}={entry.hash.value}" == digest
                and Path(entry.locate()).resolve() == path.resolve()
            ):
                found.append(name)
                break
    return found


def probe_imports(args) -> dict:
    import importlib

    versions = {}
    for name in STACK:
        module = importlib.import_module(name)
        versions[name] = getattr(module, "__version__", "?")
    import torch

    platform = None
    try:
        from vllm.platforms import current_platform

        platform = type(current_platform).__name__
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: no GPU here
        platform = f"not resolved: {type(exc).__name__}: {exc}"
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "vllm_platform": platform,
        "loaded": _distributions_loaded(),
    }


def _config(args):
    from arcsub.config import load_config

    return load_config(args.config) if args.config else load_config(None)


def _smallest_task():
    from arcsub.tasks import load_tasks

    tasks = load_tasks("arc1/evaluation").tasks
    return min(tasks, key=lambda t: (t.cells, t.id))


def probe_lora(args) -> dict:
    from importlib import metadata

    import torch

    from arcsub.finetune import load_for_training, save_adapter, train_task

    config = _config(args)
    started = time.monotonic()
    model, tokenizer = load_for_training(args.model, config, device=torch.device("cpu"))
    loaded_s = time.monotonic() - started
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    task = _smallest_task()
    result = train_task(model, tokenizer, task, config, deadline=time.time() + 900, max_steps=1, progress=False)
    adapter = Path(args.work) / "adapter"
    save_adapter(model, adapter)
    try:
        torchao = metadata.version("torchao")
    except metadata.PackageNotFoundError:
        torchao = None
    return {
        "model": str(args.model),
        "load_s": round(loaded_s, 1),
        "trainable_parameters": trainable,
        "lora_rank": config.finetune.lora_rank,
        "task": task.id,
        "steps": result.steps,
        "loss": result.losses[-1] if result.losses else None,
        "step_s": round(result.seconds, 1),
        "stop_reason": result.stop_reason,
        "adapter": str(adapter),
        "torchao": torchao,
        "loaded": _distributions_loaded(),
    }


def probe_vllm(args) -> dict:
    from vllm import SamplingParams
    from vllm.config import LoRAConfig
    from vllm.engine.arg_utils import EngineArgs
    from vllm.inputs import TokensPrompt
    from vllm.lora.peft_helper import PEFTHelper
    from vllm.lora.request import LoRARequest
    from vllm.renderers.hf import safe_apply_chat_template
    from vllm.tokenizers import get_tokenizer

    from arcsub.inference import engine_kwargs
    from arcsub.models import load_tokenizer
    from arcsub.prompts import PromptBuilder

    config = _config(args)
    model, adapter = str(args.model), str(args.adapter)
    found: dict = {"gpu_only": list(GPU_ONLY)}
    kwargs = engine_kwargs(model, config.inference, [adapter])
    found["engine_kwargs"] = {k: str(v) for k, v in kwargs.items()}
    engine_args = EngineArgs(**kwargs)  # a renamed or removed argument fails here, as on Kaggle
    model_config = engine_args.create_model_config()
    found["model_config"] = {
        "architectures": list(model_config.architectures),
        "max_model_len": model_config.max_model_len,
        "dtype": str(model_config.dtype),
        "hf_config": type(model_config.hf_config).__name__,
        "generation_defaults": model_config.get_diff_sampling_param(),  # transformers' GenerationConfig
    }
    tokenizer = get_tokenizer(model)
    found["tokenizer"] = {"class": type(tokenizer).__name__, "vocab": len(tokenizer)}

    builder = PromptBuilder(config.prompt, load_tokenizer(model))
    task = _smallest_task()
    prompt = builder.fit(task, 0, with_answer=False, max_seq_len=model_config.max_model_len)
    messages = builder.messages(task, 0, None)
    text = safe_apply_chat_template(model_config, tokenizer, messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    found["chat_template"] = {
        "task": task.id,
        "arcsub_tokens": len(prompt.token_ids),
        "vllm_tokens": len(ids),
        "same_text": text == prompt.text,
        "same_ids": ids == list(prompt.token_ids),
    }
    if not found["chat_template"]["same_ids"]:
        raise AssertionError(f"vLLM's rendering of {task.id} differs from arcsub's: {found['chat_template']}")

    helper = PEFTHelper.from_local_dir(adapter, model_config.max_model_len)
    lora_config = LoRAConfig(max_lora_rank=kwargs["max_lora_rank"], max_loras=kwargs["max_loras"])
    helper.validate_legal(lora_config)
    found["adapter"] = {
        "r": helper.r,
        "lora_alpha": helper.lora_alpha,
        "target_modules": sorted(helper.target_modules) if helper.target_modules else None,
        "max_lora_rank": kwargs["max_lora_rank"],
    }
    LoRARequest("adapter-1", 1, adapter)
    TokensPrompt(prompt_token_ids=list(prompt.token_ids))
    SamplingParams(temperature=0.0, max_tokens=8, logprobs=1)
    SamplingParams(prompt_logprobs=0, max_tokens=1)
    found["requests"] = "LoRARequest, TokensPrompt, SamplingParams (sampling and scoring) built"
    found["gpus"] = {name: gpu_engine_args(model, adapter, config, capability) for name, capability in GPUS.items()}
    try:
        EngineArgs(**kwargs).create_engine_config()
        found["engine_config"] = "built"
    except Exception as exc:  # noqa: BLE001 - expected without a GPU: recorded as the evidence
        found["engine_config"] = f"not without a GPU: {type(exc).__name__}: {exc}"
    found["loaded"] = _distributions_loaded()
    return found


GPUS = {"T4": (7, 5), "L4": (8, 9)}  # the competitions' machines (docs/kernel.md)


def gpu_engine_args(model: str, adapter: str, config, capability: tuple[int, int]) -> dict:
    """arcsub's engine arguments and worker environment for a GPU of ``capability``,
    checked by vLLM without one: EngineArgs takes every argument (the attention backend
    among them), the model config resolves in the GPU's dtype, and every ``VLLM_*``
    variable the kernel sets is one this vLLM reads (an unknown one is silently ignored)."""
    import vllm.envs
    from vllm.engine.arg_utils import EngineArgs

    from arcsub.inference import engine_kwargs
    from arcsub.kernel import engine_environment

    kwargs = engine_kwargs(model, config.inference, [adapter], capability=capability)
    if config.inference.dtype == "auto":  # hardware.device_dtype on that GPU: no bf16 before compute capability 8
        kwargs["dtype"] = "float16" if capability < (8, 0) else "bfloat16"
    model_config = EngineArgs(**kwargs).create_model_config()
    environment = engine_environment(f"{capability[0]}.{capability[1]}")
    ignored = sorted(k for k in environment if k.startswith("VLLM_") and k not in vllm.envs.environment_variables)
    if ignored:
        raise AssertionError(f"the kernel sets {', '.join(ignored)} for compute capability {capability}, which this "
                             "vLLM does not read (silently ignored): pass it as an engine argument")  # fmt: skip
    return {
        "attention_backend": str(kwargs.get("attention_backend")),
        "dtype": str(model_config.dtype),
        "gpu_memory_utilization": kwargs.get("gpu_memory_utilization"),
        "environment": environment,
    }


PROBES = {"imports": probe_imports, "lora": probe_lora, "vllm": probe_vllm}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arcsub.bundle.image_probes")
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    from arcsub.io import write_text_atomic

    found = PROBES[args.probe](args)
    write_text_atomic(args.result, json.dumps(found, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
