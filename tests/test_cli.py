import json
import subprocess
import sys
from pathlib import Path

from arcsub.cli import main
from arcsub.tasks import load_tasks, tasks_to_challenges

ARCSUB = str(Path(sys.executable).with_name("arcsub"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"t1": {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]]}]}})
    )
    done = subprocess.run([ARCSUB, "data", "validate", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"arcsub: error: {bad}: 1 invalid task(s)" in done.stderr
    assert f"{bad}: task t1 train[0].input row 1: has 1 cells but row 0 has 2" in done.stderr


def test_data_commands(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "stats", "arc1/evaluation", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["tasks"] == 400 and stats["test_inputs"] == 419 and stats["largest_side"] == 30
    code, out, _ = run(capsys, "data", "validate", "arc1/evaluation[:5]")
    assert code == 0 and "5 valid task(s)" in out
    code, out, _ = run(capsys, "data", "show", "arc1/evaluation[:1]", "--encoder", "arc24")
    assert code == 0 and "```" in out and "-- train 0 input" in out


def test_encode_prints_prompt_and_token_count(capsys):
    code, out, err = run(capsys, "encode", "arc1/evaluation[00576224]", "--augmentation", "rot90")
    assert code == 0
    assert out.rstrip().endswith("<|im_end|>") and "<|im_start|>assistant" in out
    assert "task 00576224 test 0 aug rot90:" in err and " tokens, " in err
    code, _, err = run(capsys, "encode", "arc1/evaluation[:2]")
    assert code == 2 and "holds 2 tasks" in err


def test_demo_then_validate_score_and_render(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--data", "arc1/training", "--out", str(tmp_path), "--render", "1")
    assert code == 0 and "score " in out
    sub = tmp_path / "submission.json"
    code, out, _ = run(capsys, "validate-submission", str(sub), "--challenges", "arc1/training")
    assert code == 0 and "valid for 400 task(s)" in out
    code, out, _ = run(
        capsys, "score", str(sub), "--solutions", "arc1/training",
        "--predictions", str(tmp_path / "predictions.json"), "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert report["score"] == json.loads((tmp_path / "score.json").read_text())["score"]
    assert set(report["metrics"]) >= {"accuracy", "pass_n", "vote_1", "vote_2", "correct_size", "unanswered"}
    solved = report["solved_tasks"][0]
    png = tmp_path / "one.png"
    code, out, _ = run(capsys, "render", f"arc1/training[{solved}]", "--submission", str(sub), "-o", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_submission_reports_problems(capsys, tmp_path):
    tasks = load_tasks("arc1/evaluation[:2]").tasks
    challenges = tmp_path / "c.json"
    challenges.write_text(json.dumps(tasks_to_challenges(tasks)))
    sub = tmp_path / "s.json"
    sub.write_text(json.dumps({tasks[0].id: [{"attempt_1": [[1]]}]}))
    code, _, err = run(capsys, "validate-submission", str(sub), "--challenges", str(challenges))
    assert code == 2
    assert f"task {tasks[1].id}: missing" in err and f"task {tasks[0].id} test 0: missing attempt_2" in err


def test_model_default_prints_the_cached_folder(capsys, default_model_path):
    from arcsub.models.pretrained import MERGED_DIRNAME

    code, out, _ = run(capsys, "model", "default", "--chat")
    assert code == 0 and out.strip() == str(default_model_path)
    code, out, _ = run(capsys, "model", "default")  # the pre-trained default, merged beside it
    assert code == 0 and out.strip() == str(default_model_path.parent / MERGED_DIRNAME)


def test_pure_modules_import_no_torch_or_vllm():
    code = (
        "import sys, arcsub.cli, arcsub.submission, arcsub.prompts, arcsub.pipeline, arcsub.inference.attempts; "
        "from arcsub.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'peft') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported {done.stdout.strip()}"


def test_run_refuses_bad_options_before_loading_anything(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--data", "arc1/evaluation[:1]", "--ttft-steps", "-1", "--out", str(tmp_path))
    assert code == 2 and "--ttft-steps -1: give 0 (no fine-tuning) or more" in err
    code, _, err = run(capsys, "run", "--samples", "4", "--temperature", "0", "--out", str(tmp_path))
    assert code == 2 and "temperature" in err
    assert not any(tmp_path.iterdir())
