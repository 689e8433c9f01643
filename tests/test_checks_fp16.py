"""`arcsub model check-fp16`: fp32 vs fp16 logits, and overflow flagged."""

from __future__ import annotations

import pytest

from arcsub.checks.fp16 import check_fp16
from arcsub.cli import main

# Two of these tasks fit 200 tokens (with their answers): the real model runs in seconds.
SMALL_TASKS = "arc1/evaluation[:40]"


def test_default_model_is_fp16_safe(default_model_path):
    report = check_fp16(default_model_path, source=SMALL_TASKS, max_tokens=200, prompts=1)
    assert report.prompts == 1 and report.tokens > 100
    assert report.method in ("native", "emulated") and report.reason
    assert report.nonfinite_logits == 0 and not report.overflow
    assert 0 < report.max_abs_logit_diff < 1.0
    assert report.argmax_agreement > 0.95
    assert report.max_abs_activation < 65504


@pytest.fixture(scope="module")
def overflowing(replica, tmp_path_factory):
    """The SmolLM2 replica with one MLP scaled so its output passes fp16's 65504,
    as a bf16-trained model with a high learning rate once did."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = replica("SmolLM2-135M-Instruct")
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3e6)
    path = tmp_path_factory.mktemp("overflow")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(src).save_pretrained(path)
    return path


@pytest.mark.parametrize("method", ["emulated", "native"])
def test_overflow_is_flagged(overflowing, method):
    report = check_fp16(overflowing, source=SMALL_TASKS, max_tokens=200, prompts=1, method=method)
    assert report.method == method
    assert report.max_abs_activation > 65504
    assert report.nonfinite_logits > 0
    assert report.overflow and "OVERFLOW" in report.lines()[-1]


def test_emulation_agrees_with_fp32_on_a_sane_model(replica):
    report = check_fp16(replica("Qwen2.5-0.5B-Instruct"), source=SMALL_TASKS, max_tokens=200, method="emulated")
    assert report.reason == "asked for" and not report.overflow
    assert report.max_abs_logit_diff < 0.05 and report.argmax_agreement > 0.95


def test_cli_exit_codes(replica, overflowing, capsys):
    args = ["--data", SMALL_TASKS, "--max-tokens", "200", "--prompts", "1", "--method", "emulated"]
    assert main(["model", "check-fp16", str(replica("SmolLM2-135M-Instruct")), *args]) == 0
    assert "verdict: ok for fp16" in capsys.readouterr().out
    assert main(["model", "check-fp16", str(overflowing), *args]) == 1
    assert "method: emulated on cpu (asked for)" in capsys.readouterr().out
    assert main(["model", "check-fp16", str(overflowing), "--data", SMALL_TASKS, "--max-tokens", "20"]) == 2
    assert "raise --max-tokens" in capsys.readouterr().err
