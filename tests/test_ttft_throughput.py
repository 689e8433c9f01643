"""bench/ttft_throughput.py's dry run (``--device cpu --quick``: tiny 2-layer shapes of the
two main candidates, the real loop): every (model, tokens, variant) row is in the table
and the JSON, the FLOPs and the fraction of the bound agree with the formula, and the
fixed-cost fit is there. Nothing here asserts on a timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MODELS = ("SmolLM2-135M-Instruct", "Qwen2.5-0.5B-Instruct")
VARIANTS = (
    "baseline",
    "fused",
    "checkpointing",
    "packed",
    "padded",
    "packed+fused",
    "packed+compile",
    "packed+checkpointing",
    "all",
    "all+checkpointing",
)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ttft-bench")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OUT=str(out))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ttft_throughput.py"), "--device", "cpu", "--quick", "--threads", "1"],
        check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_every_row_is_measured_or_says_why_not(dry_run):
    out, stdout = dry_run
    report = json.loads((out / "ttft_throughput.json").read_text())
    assert report["format"] == "arcsub-ttft-throughput" and report["settings"]["quick"]
    assert report["settings"]["precision"] == "fp32" and report["settings"]["tokens"] == [64, 128]
    rows = {(r["model"], r["tokens_per_step"], r["variant"]): r for r in report["rows"]}
    assert set(rows) == {(m, t, v) for m in MODELS for t in (64, 128) for v in VARIANTS}
    # the dry run compiles one graph: the first model's packed step at the largest size
    compiled = {(MODELS[0], 128, "packed+compile"), (MODELS[0], 128, "all")}
    for key, row in rows.items():
        if "compile" in row["levers"] and key not in compiled:
            assert row["error"].startswith("skipped: --quick compiles one graph")
            continue
        assert "error" not in row, (key, row.get("error"))
        assert len(row["step_s"]) == row["warmup_steps"] + 2 and row["precision"] == "fp32"
        if row["layout"] == "one":
            assert row["sequences"] == [key[1]]
        else:  # several shorter sequences, 0.7-1.3x their mean, exactly the step's tokens
            assert len(row["sequences"]) == 4 and sum(row["sequences"]) == key[1]
            assert min(row["sequences"]) < max(row["sequences"])
        assert row["layers"] == 2 and row["answer_tokens"] == sum(min(8, n - 1) for n in row["sequences"])
        assert row["tokens_per_s"] == pytest.approx(key[1] / row["median_s"])
        assert row["sequences_per_s"] == pytest.approx(len(row["sequences"]) / row["median_s"])
        assert row["bound_fraction"] == pytest.approx(row["flops"] / report["peak_flops"] / row["median_s"])
    # a packed step carries an answer per sequence
    for model in MODELS:
        assert rows[(model, 128, "packed")]["answer_tokens"] == 4 * rows[(model, 128, "baseline")]["answer_tokens"]
    assert "rough" in report["peak_note"] and "GFLOPS" in report["peak_note"]
    assert "(4·N + 6·N_lora)·T + 6·layers·d_q·ΣTᵢ² + 4·vocab·hidden·A" in report["flop_formula"]
    for key in ("device_name", "date", "torch", "transformers", "cores", "load_average"):
        assert report["machine"][key] is not None
    fit = report["fit"]
    assert fit["device"] == report["machine"]["device_name"] and fit["points"] == 4
    assert set(fit["models"]) == set(MODELS)
    assert "[40/40" in stdout  # a progress line per variant


def test_the_table_has_a_line_per_row_with_its_reference(dry_run):
    out, stdout = dry_run
    text = (out / "ttft_throughput.md").read_text()
    assert text.strip() in stdout
    assert "QUICK dry run" in text and "peak used:" in text and "fixed-cost fit over the baseline rows" in text
    header = "| model | layers | tokens/step | sequences | variant | s/step | first step s | tokens/s | sequences/s "
    assert header in text
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(lines) == len(MODELS) * 2 * len(VARIANTS)
    packed_fused = next(
        line for line in lines if line.startswith(f"| {MODELS[0]} | 2 | 128 |") and "| packed+fused |" in line
    )
    assert "× packed |" in packed_fused  # a lever on a packed step is compared with the plain packed step
    packed = next(line for line in lines if line.startswith(f"| {MODELS[0]} | 2 | 64 |") and "| packed |" in line)
    assert "× baseline |" in packed and "| 4: " in packed
