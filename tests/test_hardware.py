"""dtype, precision and device follow what the hardware does natively, not what torch emulates.

The hardware is faked in every test, so the suite means the same on a CPU box and on a
GPU machine: a T4, an A100 and a machine without CUDA. On a T4
``torch.cuda.is_bf16_supported()`` says yes (emulation), which once picked bfloat16
for serving there."""

import pytest
import torch

from arcsub.finetune.precision import resolve_precision
from arcsub.hardware import default_device, device_dtype


@pytest.fixture
def machine(monkeypatch):
    def fake(capability):
        """A CUDA GPU of this compute capability, or no CUDA at all (None)."""
        monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: capability is not None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.version, "hip", None)

    return fake


def test_a_t4_serves_and_trains_in_fp16(machine):
    machine((7, 5))
    assert device_dtype() == "float16"
    assert resolve_precision("auto", torch.device("cuda")).name == "fp16"
    assert default_device().type == "cuda"


def test_an_ampere_gpu_uses_bf16(machine):
    machine((8, 0))
    assert device_dtype() == "bfloat16"
    assert resolve_precision("auto", torch.device("cuda")).name == "bf16"


def test_without_cuda_it_is_fp32_on_the_cpu_and_explicit_choices_win(machine):
    machine(None)
    assert device_dtype() == "float32"
    assert device_dtype("float16") == "float16"
    assert default_device().type == "cpu"
    assert resolve_precision("auto", default_device()).name == "fp32"
    assert resolve_precision("fp16", torch.device("cpu")).name == "fp16"
