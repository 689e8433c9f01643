"""Training precision from the device.

``auto``: bf16 autocast on CUDA with native bf16; fp16 autocast with a gradient scaler
on other CUDA cards (the T4 of Kaggle); fp32 on CPU. fp16 and bf16 can be forced
anywhere, CPU included. Trainable weights always stay fp32 (the scaler cannot unscale
fp16 gradients, and Adam wants fp32 master weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..hardware import native_bf16


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16

    @property
    def autocast_dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def uses_scaler(self) -> bool:
        return self.name == "fp16"

    def base_dtype(self):
        """dtype for frozen base weights under LoRA (trainable weights stay fp32)."""
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]


def resolve_precision(requested: str, device) -> Precision:
    """``auto`` -> bf16 on CUDA with bf16, fp16 on other CUDA (T4), fp32 elsewhere."""
    import torch

    on_cuda = getattr(device, "type", str(device)) == "cuda"
    if requested == "auto":
        if on_cuda:
            return Precision("bf16" if native_bf16(device) else "fp16")
        return Precision("fp32")
    if requested == "bf16" and on_cuda and not native_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"finetune.precision = 'bf16' but {name} has no bf16; use 'fp16' or 'auto'")
    return Precision(requested)
