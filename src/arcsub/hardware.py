"""What the accelerator is and does natively, for the choices that depend on it:
the device to train on, the dtype to serve in, the training precision (bf16 or not:
T4s serve and train in fp16)."""

from __future__ import annotations


def native_bf16(device=None) -> bool:
    """bf16 in hardware (compute capability 8+, or ROCm). Not ``is_bf16_supported()``:
    by default that also says yes on a T4, where bf16 only runs emulated and slow
    (and vLLM refuses it below compute capability 8)."""
    import torch

    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def device_dtype(requested: str = "auto") -> str:
    """The dtype to serve in: float16 on CUDA without bfloat16 (T4: compute
    capability 7.5), bfloat16 on newer GPUs, float32 on CPU."""
    if requested != "auto":
        return requested
    import torch

    if not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if native_bf16() else "float16"


def default_device():
    """The first GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def free_accelerator_memory() -> None:
    """Hand the memory of dropped tensors back to the GPU (torch's caching allocator
    keeps it otherwise, and vLLM, starting next, checks that its share is free)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def nvidia_gpus() -> list[dict[str, str]]:
    """Every GPU's name, memory and driver as ``nvidia-smi`` reports them (no CUDA is
    initialised: the kernel's supervisor asks before its workers start); [] without it."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus
