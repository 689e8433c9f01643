"""dtype and precision follow what the GPU does in hardware, not what torch emulates.

No GPU here: torch.cuda's answers are replaced by a T4's and an A100's. On a T4
``torch.cuda.is_bf16_supported()`` says yes (emulation), which once picked bfloat16
for serving there."""

import pytest
import torch

from arcsub.finetune_loop import resolve_precision
from arcsub.inference.backend import device_dtype


@pytest.fixture
def gpu(monkeypatch):
    def fake(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    return fake


def test_a_t4_serves_and_trains_in_fp16(gpu):
    gpu((7, 5))
    assert device_dtype() == "float16"
    assert resolve_precision("auto", torch.device("cuda")).name == "fp16"


def test_an_ampere_gpu_uses_bf16(gpu):
    gpu((8, 0))
    assert device_dtype() == "bfloat16"
    assert resolve_precision("auto", torch.device("cuda")).name == "bf16"


def test_cpu_is_fp32_and_explicit_choices_win():
    assert device_dtype() == "float32"
    assert device_dtype("float16") == "float16"
    assert resolve_precision("auto", torch.device("cpu")).name == "fp32"
