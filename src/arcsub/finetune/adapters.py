"""Saving trained weights: a peft adapter folder that vLLM's ``LoRARequest`` and
``PeftModel.from_pretrained`` load, the adapter merged into full weights, and loading
an adapter back onto a base model. Every folder is written atomically."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from ..errors import FinetuneError
from ..io import atomic_dir, write_json_atomic
from .result import TrainResult

RESULT_FILE = "train_result.json"


def _unwrap(model):
    """The model inside a DistributedDataParallel wrapper."""
    import torch

    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_adapter(
    model, out_dir: str | os.PathLike, *, tokenizer=None, result: TrainResult | None = None, half: bool = False
) -> Path:
    """Save the trained weights to ``out_dir``, atomically (temp folder, rename).

    LoRA: a peft adapter folder (``adapter_config.json``, ``adapter_model.safetensors``)
    that ``PeftModel.from_pretrained`` and vLLM's ``LoRARequest(name, id, out_dir)``
    load. Full fine-tuning: a Hugging Face model folder (pass the tokenizer to save it
    beside). ``result`` is written as ``train_result.json``. ``half`` stores a LoRA
    adapter's weights in fp16 (half the size; vLLM casts them to the model's dtype)."""
    model = _unwrap(model)
    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        if hasattr(model, "peft_config"):
            # Embeddings are never trained here; "auto" could copy them into the adapter.
            model.save_pretrained(tmp, save_embedding_layers=False)
            if half:
                _to_half(tmp / "adapter_model.safetensors")
        else:
            model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if result is not None:
            write_json_atomic(tmp / RESULT_FILE, result.to_dict(), indent=1)
    return target


def _to_half(weights: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, weights, metadata={"format": "pt"})


def save_merged(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Merge a copy of the LoRA model into full weights and save it with the tokenizer
    (the model passed in keeps its adapter). The weights keep the base's dtype."""
    model = _unwrap(model)
    if not hasattr(model, "merge_and_unload"):
        raise FinetuneError("save_merged needs a LoRA (peft) model; a fully fine-tuned model is saved as it is")
    merged = copy.deepcopy(model).merge_and_unload()
    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def load_adapter(model, adapter_dir: str | os.PathLike, *, trainable: bool = False):
    """A saved adapter on ``model`` (a base model loaded with transformers)."""
    from peft import PeftModel

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise FinetuneError(f"{path}: not a peft adapter folder (no adapter_config.json); train one first")
    return PeftModel.from_pretrained(model, path, is_trainable=trainable)


PACKED_FILES = ("adapter_config.json", "adapter_model.safetensors", "arcsub-training.json", "train_result.json")


def pack_adapter(source: str | os.PathLike, dest: str | os.PathLike, *, recipe: str, base_name: str, max_bytes: int):
    """Copy an ``arcsub finetune`` adapter folder to ``dest`` for shipping: fp16 weights,
    ``base_name`` instead of this machine's base path, its manifest and result, and
    ``RECIPE.md`` (the command that made it). Refuses one over ``max_bytes``; ``dest``
    is replaced only when everything passed."""
    source, dest = Path(source), Path(dest)
    missing = [name for name in PACKED_FILES if not (source / name).is_file()]
    if missing:
        raise FinetuneError(f"{source}: no {', '.join(missing)}; pass the adapter/ folder of an arcsub finetune run")
    with atomic_dir(dest) as tmp:
        for name in PACKED_FILES:
            shutil.copyfile(source / name, tmp / name)
        _to_half(tmp / "adapter_model.safetensors")
        config = json.loads((tmp / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_name
        write_json_atomic(tmp / "adapter_config.json", config, indent=2)
        (tmp / "RECIPE.md").write_text(recipe)
        size = (tmp / "adapter_model.safetensors").stat().st_size
        if size > max_bytes:
            raise FinetuneError(
                f"{source}: {size / 2**20:.1f} MiB in fp16, over the {max_bytes / 2**20:g} MiB cap; train a lower --rank"
            )
    return dest
