"""scripts/pretrain-default.sh (scripts/pretrain_default.py): the default's pre-training
recipe, sized by the machine. Its cpu and cuda commands, the plan from a calibration,
resuming, and the cuda settings run for real on a tiny Llama (packed steps from the
cached variants), as a dry run of the device path on this CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from arcsub.cli import main as cli_main
from arcsub.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pretrain_default.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("pretrain_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flag(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == name]


def test_the_commands_name_the_data_the_exclusions_and_the_device_settings(recipe, tmp_path):
    cpu = recipe.finetune_command("cpu", tmp_path / "run", 500, minutes=60, resume=False)
    assert flag(cpu, "--data") == ["arc1/training", "arc2/training@0.584"]
    assert flag(cpu, "--exclude") == ["arc1/evaluation", "arc2/evaluation"]
    assert flag(cpu, "--steps") == ["500"] and flag(cpu, "--time-limit") == ["60"]
    assert flag(cpu, "--max-seq-len") == ["2048"] and "--use-test-outputs" in cpu and "--config" not in cpu
    assert flag(cpu, "--variants") == ["8"] and flag(cpu, "--rank") == ["16"]
    assert recipe.wrapped("cpu", cpu)[:3] == ["nice", "-n", "10"] and recipe.wrapped("cuda", cpu) == cpu
    cuda = recipe.finetune_command("cuda", tmp_path / "run", 500, minutes=8, resume=False)
    assert flag(cuda, "--max-seq-len") == ["4096"] and flag(cuda, "--config") == [str(tmp_path / "cuda.toml")]
    calibration = recipe.finetune_command("cpu", tmp_path / "c", 12, minutes=None, resume=False, calibration=True)
    assert "--variants" not in calibration and "--val-tasks" not in calibration  # its seconds are steps'
    assert flag(calibration, "--data") == flag(cpu, "--data") and "--time-limit" not in calibration
    resumed = recipe.finetune_command("cpu", tmp_path / "run", 500, minutes=60, resume=True)
    assert "--resume" in resumed and "--data" not in resumed  # the run's saved config has them


def test_steps_are_what_the_budget_buys_at_the_measured_rate(recipe, tmp_path):
    assert recipe.steps_for_budget(60, 4.0) == 810  # 3600 s, a tenth kept, 4 s a step
    with pytest.raises(recipe.RecipeError, match="rerun it"):
        recipe.steps_for_budget(60, 0.0)
    adapter = tmp_path / "calibration" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "train_result.json").write_text(json.dumps({"steps": 12, "seconds": 30.0}))
    assert recipe.measured_seconds_per_step(tmp_path / "calibration") == 2.5
    (adapter / "train_result.json").write_text("{")
    with pytest.raises(recipe.RecipeError, match="unreadable"):
        recipe.measured_seconds_per_step(tmp_path / "calibration")


def test_a_planned_run_resumes_on_its_device_only(recipe, tmp_path, capsys):
    (tmp_path / "recipe.json").write_text(json.dumps({"device": "cpu", "minutes": 60, "seconds_per_step": 3.0,
                                                      "steps": 900}))  # fmt: skip
    plan = recipe.pretrain(tmp_path, 30, "cpu", dry_run=True)
    assert plan["steps"] == 900
    shown = capsys.readouterr().out
    assert "resuming: 900 steps" in shown and "--resume" in shown and "--time-limit 30" in shown
    with pytest.raises(recipe.RecipeError, match="resume with --device cpu"):
        recipe.pretrain(tmp_path, 30, "cuda", dry_run=True)


def test_the_dry_run_of_the_cuda_path_prints_its_commands_and_writes_nothing(tmp_path):
    out = tmp_path / "pt"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--minutes", "8", "--out", str(out), "--dry-run", "--pack"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and "calibration" in lines[0] and "--max-seq-len 4096" in lines[1]
    assert "pack-default" in lines[2] and not out.exists()


def test_the_shipped_recipe_is_the_shipped_adapters_command_with_the_exclusions(recipe, tmp_path):
    command = recipe.shipped_command(tmp_path / "run", resume=False)
    shipped = (ROOT / "src" / "arcsub" / "models" / "pretrained" / "RECIPE.md").read_text()
    assert flag(command, "--data") == ["arc1/training"] and flag(command, "--model") == ["default-chat"]
    assert flag(command, "--exclude") == ["arc1/evaluation", "arc2/evaluation"]
    assert flag(command, "--steps") == ["300"] and flag(command, "--rank") == ["8"]
    assert flag(command, "--max-seq-len") == ["1024"] and flag(command, "--lr") == ["0.0003"]
    assert "--time-limit" not in command and "--variants" not in command and "--use-test-outputs" not in command
    assert "--recipe shipped" in shipped  # the packed adapter names this recipe as its maker
    resumed = recipe.shipped_command(tmp_path / "run", resume=True)
    assert "--resume" in resumed and "--data" not in resumed


def test_the_shipped_recipe_resumes_from_a_checkpoint_and_keeps_apart_from_the_sized_one(recipe, tmp_path, capsys):
    recipe.pretrain_shipped(tmp_path, "cpu", dry_run=True)
    assert "--resume" not in capsys.readouterr().out and not (tmp_path / "recipe.json").exists()  # dry: nothing written
    (tmp_path / "run" / "checkpoints" / "step-50").mkdir(parents=True)
    recipe.pretrain_shipped(tmp_path, "cpu", dry_run=True)
    shown = capsys.readouterr().out
    assert "resuming the shipped recipe" in shown and "--resume" in shown and shown.count("nice -n 10") == 1
    (tmp_path / "recipe.json").write_text(json.dumps({"recipe": "shipped", "device": "cpu", "steps": 300}))
    with pytest.raises(recipe.RecipeError, match="holds the shipped recipe's run"):
        recipe.pretrain(tmp_path, 30, "cpu", dry_run=True)
    (tmp_path / "recipe.json").write_text(
        json.dumps({"device": "cpu", "minutes": 60, "seconds_per_step": 3.0, "steps": 900})
    )  # a plan from before --recipe
    with pytest.raises(recipe.RecipeError, match="holds the sized recipe's run"):
        recipe.pretrain_shipped(tmp_path, "cpu", dry_run=True)


def test_the_shipped_recipe_takes_no_time_budget_and_its_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "shipped"
    script = [sys.executable, str(SCRIPT), "--recipe", "shipped", "--out", str(out)]
    refused = subprocess.run([*script, "--minutes", "5"], capture_output=True, text=True, check=False, cwd=ROOT)
    assert refused.returncode == 2 and "fixed steps" in refused.stderr
    done = subprocess.run([*script, "--dry-run", "--pack"], capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "--max-seq-len 1024" in lines[0] and "pack-default" in lines[1]
    assert not out.exists()


def test_the_packed_recipe_note_names_the_command_and_the_runs_figures(recipe, tmp_path):
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    result = {"steps": 4, "tokens": 900, "seconds": 12.4, "precision": "fp32", "losses": [1.0, 0.8, 0.6, 0.2]}
    (adapter / "train_result.json").write_text(json.dumps(result))
    note = recipe.recipe_note(["--recipe", "shipped", "--pack"], tmp_path, "shipped")
    assert "scripts/pretrain-default.sh --recipe shipped --pack" in note
    assert "4 steps, 900 tokens in 12 s (fp32)" in note and "mean loss 0.65 over the first 4 steps" in note
    assert "LoRA r=8" in note and "on cpu (" in note


def test_the_cuda_settings_train_packed_steps_from_the_cached_variants(recipe, tiny_llama_path, tmp_path):
    """The device path's config, run here on the CPU: what a GPU run would load."""
    settings = tmp_path / "cuda.toml"
    settings.write_text(recipe.cuda_config())
    config = load_config(settings)
    assert config.finetune.tokens_per_step == recipe.CUDA_TOKENS_PER_STEP and config.finetune.packing == "packed"
    small = "arc1/training[0d3d703e,25d8a9c8,3c9b0459,6150a2bd]"
    out = tmp_path / "run"
    args = ["finetune", "--model", tiny_llama_path, "--data", small, "--exclude", "arc1/training[6150a2bd]",
            "--config", settings, "--variants", 2, "--cache-dir", tmp_path / "cache", "--steps", 2,
            "--max-seq-len", 1024, "--out", out, "--no-progress"]  # fmt: skip
    assert cli_main([str(a) for a in args]) == 0
    result = json.loads((out / "adapter" / "train_result.json").read_text())
    assert result["steps"] == 2 and result["micro_steps"] > 2 * 3  # packed: several prompts per step, not one
    manifest = json.loads((out / "adapter" / "arcsub-training.json").read_text())
    assert manifest["excluded"][0]["seen"] == 0 and "6150a2bd" not in manifest["task_ids"]
