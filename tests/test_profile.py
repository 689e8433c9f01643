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
from pathlib import Path

import pytest

from arcsub.cli.common import user_message
from arcsub.cli.profile import register
from arcsub.competitions import load_competition
from arcsub.errors import ArcsubError
from arcsub.profile import CostModel, ProfilingError, load_cost_model, plan_run
from arcsub.profile.cost_model import Fit, fit_terms, term_value
from arcsub.profile.measure import model_config, resolve_candidate


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``arcsub profile ...`` through this module's ``register``, as ``arcsub.cli.main`` runs it."""
    parser = argparse.ArgumentParser(prog="arcsub")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile", *argv])
    try:
        rc = args.func(args)
    except ArcsubError as exc:
        print(f"arcsub: error: {user_message(exc, args.command)}", file=sys.stderr)
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

    profile = load_competition("arc-prize-2024")  # 100 tasks, 12 h, 30 min margin, 2 GPUs
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
    with pytest.raises(ProfilingError, match="`train_share` 1.5: use a share"):
        plan_run(load_competition("arc-prize-2024"), flat_model(), train_share=1.5)


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


def test_a_model_name_is_resolved_at_the_commands_edge_never_below(tmp_path, monkeypatch):
    """Below the CLI a model is a folder: a name reaching the library is refused in one
    line, and nothing is converted or merged on the way."""
    from arcsub.errors import ModelNotFoundError
    from arcsub.models.loading import load_tokenizer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCSUB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match=r"default: not a model directory.*resolve_model\('default'\)"):
        load_tokenizer("default")
    with pytest.raises(ProfilingError, match="default-chat: a name to resolve first"):
        model_config("default-chat")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- errors a user can make


def test_one_line_errors(tmp_path, capsys):
    def error(argv):
        rc, _out, err = run_cli(argv, capsys)
        assert rc == 2 and err.count("\n") == 1 and err.startswith("arcsub: error: ")
        return err

    assert "not a model folder, 'default', nor a registered candidate" in error(["plan", "--model", "GPT-9"])
    # the library names the setting, the command line shows its flag
    assert "arcsub: error: --train-share 1.5: use a share in [0, 1]" in error(["plan", "--train-share", "1.5"])
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
    # planning, comparing (packed steps, the recorded fits) and fitting measured profiles, run whole
    code = (
        "import glob, sys; from arcsub.cli import main; "
        "main(['profile', 'compare', 'SmolLM2-135M', 'Qwen2.5-0.5B', '--profile', 'arc-prize-2024', "
        "'--profile', 'arc-prize-2025', '--tokens-per-step', '8192']); "
        "main(['profile', 'fit', *glob.glob('docs/profiles/h100-*.profile.json')]); "
        "print([m for m in ('torch', 'numpy', 'transformers', 'matplotlib', 'vllm') if m in sys.modules])"
    )
    root = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert "TTFT at equal time per task" in out and "6.779 ms per layer" in out
    assert out.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- the arithmetic and the fixed-cost fit


def test_flop_formula_counts_base_adapter_attention_and_head():
    from arcsub.models.registry import get_candidate
    from arcsub.profile.flops import step_arithmetic

    a = step_arithmetic(dict(get_candidate("SmolLM2-135M-Instruct").config), lora_rank=32)
    assert a.layers == 30 and a.d_q == 9 * 64
    assert a.body == 134_515_008 - 49152 * 576  # tied embeddings counted once, outside N
    # r=32 on q, k, v, o (576->576, 576->192 twice, 576->576) and gate, up, down (576<->1536), 30 layers
    assert a.lora == 30 * 32 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))
    one = a.flops([2048], 128)
    assert one == pytest.approx((4 * a.body + 6 * a.lora) * 2048 + 6 * 30 * 576 * 2048**2 + 4 * 49152 * 576 * 128)
    # packed sequences do not attend to each other: their squares add, the linear part is the same
    packed = a.flops([1024, 1024], 128)
    assert one - packed == pytest.approx(6 * 30 * 576 * (2048**2 - 2 * 1024**2))


def synthetic_points(step_s, layer_s, rate, depths=(12, 24, 30), flops=(1e11, 4e11, 1.6e12)):
    from arcsub.profile.step_fit import StepPoint

    return [
        StepPoint(f"m{n}", n, f * n / 12, step_s + layer_s * n + f * n / 12 / rate if rate else step_s + layer_s * n, 1)
        for n in depths
        for f in flops
    ]


def test_step_fit_recovers_known_per_step_per_layer_and_rate():
    from arcsub.profile.step_fit import fit_step_costs

    points = synthetic_points(0.02, 0.004, 50e12)
    fit = fit_step_costs(points, device="NVIDIA H100 80GB HBM3", peak_flops=989e12)
    assert fit.step_s == pytest.approx(0.02, rel=1e-6) and fit.layer_s == pytest.approx(0.004, rel=1e-6)
    assert 1 / fit.seconds_per_flop == pytest.approx(50e12, rel=1e-6)
    assert fit.utilisation == pytest.approx(50 / 989, rel=1e-6) and fit.rms_rel_error < 1e-9
    assert fit.models == {"m12": 12, "m24": 24, "m30": 30} and fit.points == 9
    assert fit.overhead_s(30) == pytest.approx(0.14, rel=1e-6)
    # a rate past the device's peak is not physical: refused, whatever it would gain in error
    fast = fit_step_costs(synthetic_points(0.0, 0.006, 2000e12), device="NVIDIA H100", peak_flops=989e12)
    assert fast.seconds_per_flop == 0.0 or 1 / fast.seconds_per_flop <= 989e12
    assert fast.layer_s > 0 and all(v >= 0 for v in (fast.step_s, fast.layer_s, fast.seconds_per_flop))
    # one depth: a per-step and a per-layer constant are the same thing, and it is said
    one = fit_step_costs(synthetic_points(0.05, 0.0, 0, depths=(30,)), device="CPU: test")
    assert not (one.step_s and one.layer_s) and any("cannot be told apart" in n for n in one.notes)
    assert one.overhead_s(30) == pytest.approx(0.05, rel=1e-6)
    assert any("no rate fitted" in n for n in one.notes)


def test_step_fit_of_the_recorded_h100_profiles(tmp_path, capsys):
    """The two H100 profiles in docs/profiles: one fit, its device named, recorded and read back."""
    from arcsub.profile.step_fit import recorded_fits

    files = sorted(str(p) for p in (Path(__file__).parents[1] / "docs" / "profiles").glob("h100-*.profile.json"))
    assert len(files) == 2
    out = tmp_path / "fits.json"
    rc, text, _ = run_cli(["fit", *files, "-o", str(out)], capsys)
    assert rc == 0 and "NVIDIA H100 80GB HBM3" in text and "6 steps" in text
    assert "SmolLM2-135M-Instruct: 30 layers" in text and "Qwen2.5-0.5B-Instruct: 24 layers" in text
    (fit,) = recorded_fits(out)
    assert fit.device == "NVIDIA H100 80GB HBM3" and fit.points == 6 and fit.peak_flops == 989e12
    assert fit.overhead_s(30) > fit.overhead_s(24) or fit.layer_s == 0
    shipped = {f.device: f for f in recorded_fits()}  # what the analytic estimate reads
    assert shipped["NVIDIA H100 80GB HBM3"].to_dict() | {"sources": []} == fit.to_dict() | {"sources": []}


def test_fit_refuses_mixed_devices_and_foreign_files(measured, tmp_path, capsys):
    h100 = str(next((Path(__file__).parents[1] / "docs" / "profiles").glob("h100-*.profile.json")))
    rc, _, err = run_cli(["fit", h100, str(measured)], capsys)
    assert rc == 2 and "several devices" in err and err.count("\n") == 1
    foreign = tmp_path / "x.json"
    foreign.write_text('{"hello": 1}')
    rc, _, err = run_cli(["fit", str(foreign)], capsys)
    assert rc == 2 and "neither a profile.json" in err
    # a profile measured now keeps its model's config, so any folder model can be fitted
    assert json.loads(measured.read_text())["model"]["config"]["num_hidden_layers"] == 2
    rc, out, _ = run_cli(["fit", str(measured)], capsys)
    assert rc == 0 and "cannot be told apart" in out


def test_analytic_estimate_takes_its_step_overhead_from_a_fit_and_says_so():
    from arcsub.models.registry import get_candidate
    from arcsub.profile import analytic_cost_model
    from arcsub.profile.analytic import TRAIN_STEP_OVERHEAD_S, TRAIN_UTILISATION
    from arcsub.profile.flops import step_arithmetic
    from arcsub.profile.step_fit import fit_step_costs

    cfg = dict(get_candidate("SmolLM2-135M-Instruct").config)
    h100 = fit_step_costs(synthetic_points(0.02, 0.004, 100e12), device="NVIDIA H100 80GB HBM3", peak_flops=989e12)
    flops = step_arithmetic(cfg).terms()

    def estimate(gpu, fits):
        cost = analytic_cost_model(cfg, label="s", gpu_name=gpu, step_fits=fits)
        return cost, dict(zip(cost.fits["train_step_s"].terms, cost.fits["train_step_s"].coef)), cost.assumptions

    # no fit: the old assumption, said to be one
    _, coef, notes = estimate("Tesla T4", [])
    rate = 65e12 * TRAIN_UTILISATION
    assert coef["1"] == pytest.approx(TRAIN_STEP_OVERHEAD_S + flops["A"] * 145 / rate)
    assert any("0.05 s per step, assumed" in n for n in notes)
    # the H100's fit on a T4: its overhead (30 layers) carried, the T4's assumed utilisation
    _, coef, notes = estimate("Tesla T4", [h100])
    assert coef["1"] == pytest.approx(0.02 + 0.004 * 30 + flops["A"] * 145 / rate)
    assert coef["T"] == pytest.approx(flops["T"] / rate)
    assert any("fitted on NVIDIA H100 80GB HBM3" in n and "carried to the Tesla T4" in n for n in notes)
    # on the device it was measured on: its overhead and its fitted rate
    _, coef, notes = estimate("NVIDIA H100 80GB HBM3", [h100])
    assert coef["T"] == pytest.approx(flops["T"] / 100e12, rel=1e-6)
    assert any("fitted on NVIDIA H100" in n and "carried" not in n for n in notes)
    assert any("of peak (fitted on NVIDIA H100" in n for n in notes)


def test_packed_steps_buy_sequences_at_equal_time():
    profile = load_competition("arc-prize-2024")
    plan = plan_run(profile, flat_model(step_s=10.0), prompt_tokens=(1000, 9000), tokens_per_step=4096)
    small, large = plan.stages
    assert small.packed.sequences_per_step == 4 and large.packed.sequences_per_step == 1  # at least one
    # a flat model's packed step costs what one sequence does: the same steps, four times the sequences
    assert small.packed.steps == small.steps and small.packed.sequences == 4 * small.steps
    assert small.packed.tokens_per_hour(1000) == pytest.approx(4 * 1000 * 3600 / 10.0)
    assert small.tokens_per_hour == pytest.approx(1000 * 3600 / 10.0)
    # a step that grows with its tokens: packed steps are as long as one sequence of their total
    growing = flat_model()
    growing.fits["train_step_s"] = Fit(("1", "T"), (0.2, 1e-4))
    stage = plan_run(profile, growing, prompt_tokens=(1000,), tokens_per_step=4096).stages[0]
    assert stage.packed.step_s == pytest.approx(0.2 + 1e-4 * 4000)
    assert stage.packed.steps == int(stage.train_s // stage.packed.step_s)
    with pytest.raises(ProfilingError, match="`tokens_per_step`"):
        plan_run(profile, flat_model(), tokens_per_step=-1)


def test_compare_reports_tokens_per_hour_and_steps_per_task_per_profile(capsys):
    argv = ["compare", "SmolLM2-135M", "Qwen2.5-0.5B", "--profile", "arc-prize-2024", "--profile", "arc-prize-2025"]
    rc, out, _ = run_cli(argv + ["--tokens-per-step", "4096"], capsys)
    assert rc == 0
    assert "TTFT at equal time per task" in out
    header = next(line for line in out.splitlines() if line.startswith("| profile | model |"))
    for column in ("TTFT time/task", "1 seq/step: s/step", "steps/task", "tokens/h", "packed ≤4096 tok: seq/step",
                   "sequences/task", "memory"):  # fmt: skip
        assert column in header
    rows = [line for line in out.splitlines() if line.startswith("| arc-prize-")]
    assert len(rows) == 2 * 2 * 2  # profiles x models x prompt lengths
    assert {r.split(" | ")[0][2:] for r in rows} == {"arc-prize-2024", "arc-prize-2025"}
    first = rows[0].strip("| ").split(" | ")
    assert first[1] == "SmolLM2-135M-Instruct" and first[2] == "1400" and first[7] == "2"  # 4096 // 1400 sequences
    assert "fitted on NVIDIA H100 80GB HBM3" in out and "carried to the Tesla T4" in out
    assert "a packed step of k sequences of P tokens is timed as one sequence of k·P tokens" in out
    # 0: one sequence per step only
    rc, out, _ = run_cli(["compare", "SmolLM2-135M", "--tokens-per-step", "0"], capsys)
    assert rc == 0 and "tokens/h" in out and "packed ≤" not in out
