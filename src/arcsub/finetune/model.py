"""Setting a model up for training: base weights in the precision's dtype, a LoRA
adapter attached (or every weight trainable), and copies of the trainable weights
so that each task can start from the same adapter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, FinetuneConfig
from ..errors import ConfigError
from ..hardware import default_device
from ..models import load_tokenizer, model_folder
from .precision import resolve_precision


def resolve_target_modules(model, names: Sequence[str]) -> list[str]:
    """Module names to adapt. ``all-linear``: every linear layer but the output head,
    by short name (q_proj, ..., down_proj), the form vLLM expects in adapter configs."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }
    if "all-linear" in names:
        if not linear:
            raise ConfigError("finetune.target_modules = ['all-linear'] but the model has no linear layers")
        return sorted(linear)
    everything = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [n for n in names if n not in everything]
    if unknown:
        raise ConfigError(
            f"finetune.target_modules: the model has no module named {', '.join(unknown)}; "
            f"its linear layers are {', '.join(sorted(linear))}"
        )
    return list(names)


def attach_lora(model, config: FinetuneConfig):
    """Wrap ``model`` in a peft LoRA adapter; adapter weights fp32, initialised from
    ``config.seed``. Refuses DoRA when ``config.for_vllm`` (vLLM cannot serve it)."""
    import torch
    from peft import LoraConfig, get_peft_model

    if config.use_dora and config.for_vllm:
        raise ConfigError(
            "finetune.use_dora = true but vLLM cannot serve DoRA adapters; "
            "set use_dora = false, or for_vllm = false if the adapter is served another way"
        )
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=resolve_target_modules(model, config.target_modules),
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        bias="none",  # vLLM serves no LoRA biases
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        peft_model = get_peft_model(model, lora)
    return trainable_in_fp32(peft_model)


def trainable_in_fp32(model):
    """``model`` with its trainable weights (the adapter) in fp32: Adam's master weights,
    and what the fp16 scaler can unscale; the frozen base keeps its dtype."""
    import torch

    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def initial_adapter_dir(config: FinetuneConfig) -> Path | None:
    """The folder of ``finetune.initial_adapter`` (``pretrained``: the shipped adapter)."""
    if config.initial_adapter is None:
        return None
    if config.initial_adapter == "pretrained":
        from ..models import shipped_adapter

        return shipped_adapter()
    folder = Path(config.initial_adapter)
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(
            f"finetune.initial_adapter = {config.initial_adapter!r}: no adapter_config.json there; "
            "give a peft adapter folder, 'pretrained', or leave it out for a fresh adapter"
        )
    return folder


def training_lora_rank(config: FinetuneConfig) -> int:
    """The rank of the adapter training makes: the initial adapter's, else ``lora_rank``."""
    from ..inference import adapter_rank

    folder = initial_adapter_dir(config)
    return adapter_rank(folder) if folder is not None else config.lora_rank


def load_initial_adapter(model, folder: Path):
    """``model`` under the adapter in ``folder``, trainable, its weights fp32."""
    from peft import PeftModel

    return trainable_in_fp32(PeftModel.from_pretrained(model, str(folder), is_trainable=True))


def prepare_for_training(model, config: FinetuneConfig):
    """``attach_lora`` (or ``finetune.initial_adapter``) for ``method = "lora"``; every
    weight trainable (fp32) for "full"."""
    import torch

    if config.method == "lora":
        folder = initial_adapter_dir(config)
        return attach_lora(model, config) if folder is None else load_initial_adapter(model, folder)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # Adam needs fp32 master weights; autocast handles the rest
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def load_for_training(model: str | os.PathLike, config: Config, *, device=None):
    """Load ``model`` (a model folder) and its tokenizer, ready to train:
    base weights in the precision's dtype under LoRA (fp16 on a T4, fp32 on CPU),
    fp32 for full fine-tuning. Returns ``(model, tokenizer)``."""
    import torch
    from transformers import AutoModelForCausalLM

    ft = config.finetune
    device = device or default_device()
    path = model_folder(model)
    precision = resolve_precision(ft.precision, device)
    dtype = precision.base_dtype() if ft.method == "lora" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    tokenizer = load_tokenizer(path)
    return prepare_for_training(base, ft), tokenizer


def trainable_state(model) -> dict:
    """A copy of the trainable weights (the adapter), to start each task from."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore_trainable(model, state: dict) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name])
