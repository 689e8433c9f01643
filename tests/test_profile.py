"""The timing-budget profiler: measurement on a tiny random Llama (transformers backend,
tiny lengths), the cost-model fit, the projection arithmetic against a competition
profile, the PNG, the analytic estimate's printed assumptions, one-line errors.
Nothing here asserts on a timing."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import pytest

from arcsub.cli.profile import register
from arcsub.errors import ArcsubError
from arcsub.kernel.profiles import load_profile
from arcsub.profile import CostModel, ProfilingError, load_cost_model, plan_run
from arcsub.profile.cost_model import Fit, fit_terms, term_value
from arcsub.profile.measure import resolve_candidate


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``arcsub profile ...`` through this module's ``register``, as ``arcsub.cli.main`` runs it."""
    parser = argparse.ArgumentParser(prog="arcsub")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile", *argv])
    try:
        rc = args.func(args)
    except ArcsubError as exc:
        print(f"arcsub: error: {exc}", file=sys.stderr)
        rc = 2
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_llama_path):
    """One real measurement of the tiny model through ``arcsub profile measure``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2 cores here are shared
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    parser = argparse.ArgumentParser(prog="arcsub")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["profile", "measure", "--model", str(tiny_llama_path), "--quick", "--lengths", "32,64,96", "--device", "cpu"]
        + ["--no-progress", "-o", str(out)]
    )
    try:
        assert args.func(args) == 0
    finally:
        torch.set_num_threads(threads)
    return out


# ---------------------------------------------------------------- the fit


def test_terms_evaluate_products_and_powers():
    assert term_value("1", {}) == 1.0
    assert term_value("B*P^2", {"B": 2, "P": 10}) == 200.0
    with pytest.raises(ValueError):
        term_value("X", {"X": 1})


def test_fit_recovers_known_coefficients_and_stays_non_negative():
    points = [{"T": t} for t in (128, 256, 512, 1024, 2048)]
    y = [0.5 + 0.01 * p["T"] + 2e-6 * p["T"] ** 2 for p in points]
    fit = fit_terms(points, y, ("1", "T", "T^2"))
    assert dict(zip(fit.terms, fit.coef)) == pytest.approx({"1": 0.5, "T": 0.01, "T^2": 2e-6}, rel=1e-6)
    assert fit.rms_rel_error < 1e-9
    # data a straight line through the origin would fit only with a negative intercept: none is negative
    fit = fit_terms([{"T": 100}, {"T": 200}, {"T": 300}], [1.0, 3.0, 5.0], ("1", "T", "T^2"))
    assert all(c >= 0 for c in fit.coef)
    # two points: at most two terms
    assert len(fit_terms([{"T": 1}, {"T": 2}], [1.0, 2.0], ("1", "T", "T^2")).terms) <= 2


def test_measured_profile_holds_machine_raw_points_and_fits(measured):
    data = json.loads(measured.read_text())
    assert data["format"] == "arcsub-profile" and data["version"] == 1
    machine = data["machine"]
    for key in ("date", "device", "device_name", "torch", "transformers", "cores"):
        assert machine[key]
    assert [r["tokens"] for r in data["measured"]["train"]] == [32, 64, 96]
    assert all(r["precision"] == "fp32" for r in data["measured"]["train"])
    assert len(data["measured"]["generate"]) == 4 and len(data["measured"]["score"]) == 4
    assert data["measured"]["load_s"] > 0 and data["measured"]["engine_start_s"] > 0
    cost = load_cost_model(measured)
    assert cost.measured and cost.generation_batch == 4
    assert set(cost.fits) >= {"train_step_s", "prefill_s", "decode_step_s", "score_s"}
    # the fit reproduces its own points within its reported error, and its coefficients are >= 0
    train = data["measured"]["train"]
    fit = cost.fits["train_step_s"]
    assert all(c >= 0 for f in cost.fits.values() for c in f.coef)
    errors = [fit(T=r["tokens"]) / r["median_s"] - 1 for r in train]
    assert math.sqrt(sum(e * e for e in errors) / len(errors)) == pytest.approx(fit.rms_rel_error, abs=1e-9)
    assert cost.seconds_per_prediction(96, 16) > 0 and cost.seconds_per_score(96, 16) > 0
    assert not cost.extrapolated("T", 96) and cost.extrapolated("T", 4096)


# ---------------------------------------------------------------- projection


def flat_model(step_s=10.0, prediction_s=2.0, score_s=0.5, load_s=30.0, engine_s=70.0) -> CostModel:
    """Constant costs: a step, one batch of 1 sequence, one scored answer."""
    return CostModel(
        label="flat",
        source="measured on test, 2026-11-28",
        device="Tesla T4",
        fits={
            "train_step_s": Fit(("1",), (step_s,)),
            "prefill_s": Fit(("1",), (prediction_s,)),
            "decode_step_s": Fit(("1",), (0.0,)),
            "score_s": Fit(("1",), (score_s,)),
            "train_memory_bytes": Fit(("1", "T"), (1e9, 1e6)),
        },
        load_s=load_s,
        engine_start_s=engine_s,
        generation_batch=1,
    )


def test_projection_arithmetic_budget_margin_workers():
    from arcsub.config import InferenceConfig

    profile = load_profile("arc-prize-2024")  # 100 tasks, 12 h, 30 min margin, 2 GPUs
    inference = InferenceConfig(max_candidates=2, score_augmentations=3)
    plan = plan_run(profile, flat_model(), prompt_tokens=(1000, 9000), train_share=0.5, inference=inference)
    assert plan.budget_s == 43200 - 1800
    assert plan.workers == 2 and plan.tasks_per_worker == 50
    task_s = (43200 - 1800 - 100) / 50
    assert plan.task_s == pytest.approx(task_s)
    stage = plan.stages[0]
    assert stage.steps == int(task_s * 0.5 // 10)
    scoring = 2 * 3 * (419 / 400) * 0.5
    assert stage.scoring_s == pytest.approx(scoring)
    assert stage.predictions == int((task_s * 0.5 - scoring) // 2)
    # TTFT memory against what training may use of a T4 (all but vLLM's share)
    limit = (1 - profile.plan.vllm_memory_share) * 15e9
    assert stage.memory_limit_bytes == pytest.approx(limit)
    assert plan.stages[0].fits_memory and not plan.stages[1].fits_memory

    odd = plan_run(profile, flat_model(), tasks=7, prompt_tokens=(1000,))
    assert odd.tasks_per_worker == 4  # ceil(7 / 2)

    fixed = plan_run(profile, flat_model(), prompt_tokens=(1000,), steps=100, predictions=10, inference=inference)
    s = fixed.stages[0]
    assert s.total_s == pytest.approx(100 + 50 * (100 * 10 + scoring + 10 * 2))


def test_projection_refuses_bad_shares():
    with pytest.raises(ProfilingError, match="train-share"):
        plan_run(load_profile("arc-prize-2024"), flat_model(), train_share=1.5)


def test_plan_from_measured_profile_prints_table_and_draws_png(measured, tmp_path, capsys):
    png, out_json = tmp_path / "plan.png", tmp_path / "plan.json"
    argv = ["plan", "--from", str(measured), "--profile", "local-cpu", "--prompt-tokens", "64,512"]
    rc, out, _ = run_cli(argv + ["--png", str(png), "--json", str(out_json)], capsys)
    assert rc == 0
    assert "local-cpu" in out and "| prompt tokens | TTFT s/step | steps/task |" in out
    assert "512+145 *" in out  # beyond the measured lengths: marked as extrapolated
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads(out_json.read_text())[0]
    assert plan["workers"] == 2 and plan["tasks_per_worker"] == 50
    assert [s["prompt_tokens"] for s in plan["stages"]] == [64, 512]


def test_analytic_estimate_prints_every_assumption(capsys, tmp_path):
    rc, out, _ = run_cli(["compare", "SmolLM2-135M", "Qwen2.5-0.5B", "--png", str(tmp_path / "c.png")], capsys)
    assert rc == 0
    assert "SmolLM2-135M-Instruct" in out and "Qwen2.5-0.5B-Instruct" in out
    assert "analytic: Tesla T4" in out and "assumptions:" in out
    for phrase in ("65 TFLOPS", "320 GB/s", "10% of peak", "per-step overhead", "engine start", "median of 1396"):
        assert phrase in out
    rc, out, _ = run_cli(["plan", "--model", "SmolLM2-360M", "--profile", "arc-prize-2025"], capsys)
    assert rc == 0 and "NVIDIA L4" in out and "4 worker(s), 60 tasks each" in out
    rc, out, _ = run_cli(["plan", "--model", "SmolLM2-135M", "--steps", "300", "--predictions", "96"], capsys)
    assert rc == 0 and "fixed plan" in out and ("fits)" in out or "OVER budget" in out)


def test_candidate_names_match_by_unique_prefix():
    assert resolve_candidate("smollm2-135m").name == "SmolLM2-135M-Instruct"
    assert resolve_candidate("Qwen2.5-0.5B").name == "Qwen2.5-0.5B-Instruct"
    assert resolve_candidate("no-such-model") is None
    with pytest.raises(ProfilingError, match="several candidates"):
        resolve_candidate("SmolLM2")


# ---------------------------------------------------------------- errors a user can make


def test_one_line_errors(tmp_path, capsys):
    def error(argv):
        rc, _out, err = run_cli(argv, capsys)
        assert rc == 2 and err.count("\n") == 1 and err.startswith("arcsub: error: ")
        return err

    assert "not a model folder, 'default', nor a registered candidate" in error(["plan", "--model", "GPT-9"])
    missing = tmp_path / "missing.json"
    assert "profile file not found; measure one" in error(["plan", "--from", str(missing)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in error(["plan", "--from", str(bad)])
    bad.write_text('{"hello": 1}')
    assert "not an arcsub profile" in error(["plan", "--from", str(bad)])
    bad.write_text(json.dumps({"format": "arcsub-profile", "version": 1, "cost_model": {"fits": {}}}))
    assert "lacks train_step_s" in error(["plan", "--from", str(bad)])
    fits = {k: {"terms": ["1"], "coef": [1.0]} for k in ("train_step_s", "prefill_s", "decode_step_s", "score_s")}
    fits["score_s"] = {"terms": ["Q"], "coef": [1.0]}
    bad.write_text(json.dumps({"format": "arcsub-profile", "version": 1, "cost_model": {"fits": fits}}))
    assert "unknown term 'Q'" in error(["plan", "--from", str(bad)])
    assert "unknown competition profile" in error(["plan", "--profile", "arc-prize-1999"])
    assert "--prompt-tokens" in error(["plan", "--prompt-tokens", "lots"])
    assert "cannot build its full shape" in error(["compare", "OpenELM-270M", "--measure", "--out-dir", str(tmp_path)])


def test_planning_imports_nothing_heavy():
    code = (
        "import sys, arcsub.profile, arcsub.cli.profile; "
        "print([m for m in ('torch', 'numpy', 'transformers', 'matplotlib', 'vllm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
