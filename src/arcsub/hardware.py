"""What the accelerator can do, for the choices that depend on it (dtype, precision)."""

from __future__ import annotations


def native_bf16(device=None) -> bool:
    """bf16 in hardware (compute capability 8+, or ROCm). Not ``is_bf16_supported()``:
    by default that also says yes on a T4, where bf16 only runs emulated and slow
    (and vLLM refuses it below compute capability 8)."""
    import torch

    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8
