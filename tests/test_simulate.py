"""The local Kaggle simulator: real runs of the dummy kernels in tests/kernels/ in both
modes (new namespaces where this machine permits them, and the fallback without), each
with a budget of seconds."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from arcsub.simulate import NO_NAMESPACE_ENV, SimulationError, SimulationOptions, namespace_support, simulate
from arcsub.tasks import load_tasks, tasks_to_solutions

KERNELS = Path(__file__).parent / "kernels"
ARCSUB = str(Path(sys.executable).with_name("arcsub"))
DATA = "arc1/evaluation[:2]"
HAVE_NAMESPACES, WHY_NOT = namespace_support()
MODES = [
    pytest.param("namespace", marks=pytest.mark.skipif(not HAVE_NAMESPACES, reason=f"no namespaces: {WHY_NOT}")),
    "fallback",
]


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake-model")
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "tokenizer.json").write_text("{}")
    return path


@pytest.fixture
def run(tmp_path, fake_model):
    def run(kernel: str, mode: str, **options) -> tuple[dict, Path]:
        out = tmp_path / "out"
        options.setdefault("data", DATA)
        options.setdefault("budget_s", 30)
        report = simulate(
            SimulationOptions(
                out=out, kernel=KERNELS / kernel, model=str(fake_model), namespace=mode == "namespace", **options
            ),
            echo=lambda line: None,
        )
        assert json.loads((out / "simulation.json").read_text()) == report
        assert report["mode"] == mode
        return report, out / "kaggle" / "working"

    return run


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("mode", MODES)
def test_a_valid_submission_is_scored_and_the_kernel_never_sees_solutions(run, mode, tmp_path, monkeypatch):
    tasks = load_tasks(DATA).tasks
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(tasks_to_solutions(tasks)))
    monkeypatch.setenv("DUMMY_ANSWERS", str(answers))  # the first task answered right
    monkeypatch.setenv("DUMMY_PROBE", str(tmp_path / "out" / "expected"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")

    report, working = run("valid.py", mode)

    first = min(t.id for t in tasks)
    assert report["passed"] and report["failures"] == []
    assert report["submission"]["valid"]
    score = report["submission"]["score"]
    assert (score["solved"], score["total"]) == (len(next(t for t in tasks if t.id == first).test), 3)
    assert score["solved_tasks"] == [first]
    assert report["run"]["exit_code"] == 0 and report["run"]["killed"] is None
    assert report["kernel_report"]["summary"] == "dummy: all tasks answered"
    assert (working / "logs" / "kernel.txt").read_text() == "done\n"  # everything it wrote is kept
    assert report["run"]["disk_used_bytes"] > 0
    log = (tmp_path / "out" / "logs" / "kernel.log").read_text()
    assert "dummy kernel: 2 tasks" in log and "a line on stderr" in log

    seen = read(working / "seen.json")
    assert seen["env"] == {"KAGGLE_IS_COMPETITION_RERUN": "1", "PYTHONUNBUFFERED": "1"}
    assert seen["run_request"] == {"competition": "local-cpu", "budget_s": 30}
    assert seen["proxies"] == []
    assert "competitions/arc-prize-2024/arc-agi_test_challenges.json" in seen["inputs"]
    assert "arcsub-model/config.json" in seen["inputs"]
    assert not [p for p in seen["inputs"] if "solution" in p]
    inputs = tmp_path / "out" / "kaggle" / "input"
    assert not [p for p in inputs.rglob("*") if "solution" in p.name]
    challenges = read(inputs / "competitions" / "arc-prize-2024" / "arc-agi_test_challenges.json")
    assert all("output" not in t for task in challenges.values() for t in task["test"])
    if mode == "namespace":
        assert seen["cwd"] == "/kaggle/working" and seen["kaggle_exists"] and seen["argv"] == []
        assert seen["probe"] == []  # OUT/expected is covered inside the namespace
        assert all(report["enforcement"][k]["enforced"] for k in ("time", "ram", "disk", "network", "filesystem"))
    else:
        assert seen["argv"][::2] == ["--input-root", "--working-root", "--temp-root"]
        assert seen["cwd"] == str(working)
        assert report["enforcement"]["network"]["enforced"] is False
        assert report["enforcement"]["filesystem"]["enforced"] is False


@pytest.mark.parametrize("mode", MODES)
def test_a_kernel_past_the_deadline_is_killed_and_its_fallback_judged(run, mode):
    report, working = run("sleeper.py", mode, budget_s=2)

    killed = report["run"]["killed"]
    assert killed["by"] == "deadline" and killed["at_s"] >= 2  # never before the budget is spent
    assert report["run"]["exit_code"] == -9
    # killed in its 120 s sleep: what it printed before is in the log, what it prints after is not
    log = (working.parents[1] / "logs" / "kernel.log").read_text()
    assert "fallback written; sleeping" in log and "woke up" not in log
    assert report["submission"]["valid"] and report["submission"]["score"]["total"] == 3
    assert not report["passed"]  # on Kaggle a timed-out run scores nothing
    assert any("deadline" in f for f in report["failures"])


@pytest.mark.parametrize("mode", MODES)
def test_the_ram_limit_kills(run, mode):
    report, _ = run("ram_hog.py", mode, ram_gb=0.3)

    assert report["run"]["killed"]["by"] == "ram"
    assert report["run"]["peak_ram_bytes"] > 0.3 * 2**30
    assert report["submission"]["valid"]  # what was on disk is still judged
    assert not report["passed"]


@pytest.mark.skipif(not HAVE_NAMESPACES, reason=f"no namespaces: {WHY_NOT}")
def test_there_is_no_network_inside(run):
    report, working = run("network.py", "namespace")

    result = read(working / "network.json")
    assert result["connected"] is False
    assert result["errno"] in ("ENETUNREACH", "EHOSTUNREACH")
    assert report["passed"]


@pytest.mark.parametrize("mode", MODES)
def test_no_space_makes_a_big_write_fail(run, mode):
    report, working = run("big_write.py", mode, no_space=True)

    result = read(working / "big_write.json")
    assert result["written"] is False
    assert result["errno"] == ("ENOSPC" if mode == "namespace" else "EFBIG")
    assert report["limits"]["no_space"] and report["limits"]["disk_bytes"] == 2**20
    assert report["passed"] and report["run"]["killed"] is None


@pytest.mark.parametrize("mode", MODES)
def test_kill_worker_after_kills_the_worker_and_records_it(run, mode):
    report, working = run("worker.py", mode, kill_worker_after_s=1)

    record = report["faults"]["kill_worker"]
    assert record["killed"] is True and record["after_s"] == 1 and record["at_s"] >= 1
    assert "arcsub.kernel.worker" in record["cmdline"]
    assert read(working / "worker.json") == {"returncode": -9}
    assert report["passed"]  # the kernel survived its worker


@pytest.mark.parametrize("mode", MODES)
def test_what_the_kernel_leaves_running_is_killed_when_it_ends(run, mode, monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv("ARCSUB_TEST_MARK", mark)  # the kernel and its child get it
    report, _ = run("orphan.py", mode)  # its child sleeps 60 s, past the budget of 30 s

    assert len(report["run"]["left_running"]) == 1
    # the run ended with the kernel's main process: had it waited for the child (or the
    # pipe the child holds), the deadline would have killed it
    assert report["run"]["killed"] is None and report["run"]["exit_code"] == 0
    assert report["passed"]
    guard = time.monotonic() + 10  # a guard against a hang, not a timing assertion
    while _marked(mark) and time.monotonic() < guard:
        time.sleep(0.1)
    assert _marked(mark) == []  # the child was killed, not left to run out its sleep


def test_no_worker_to_kill_is_recorded(run):
    report, _ = run("sleeper.py", "fallback", budget_s=2, kill_worker_after_s=0.5)

    record = report["faults"]["kill_worker"]
    assert record["killed"] is False and "no worker to kill" in record["detail"]


@pytest.mark.parametrize("mode", MODES)
def test_an_invalid_submission_fails_the_run_with_its_problems_named(run, mode):
    report, _ = run("invalid.py", mode)

    first, second = sorted(t.id for t in load_tasks(DATA).tasks)
    problems = report["submission"]["problems"]
    assert f"task {first}: missing" in problems
    assert any(f"task {second} test 0 attempt_2" in p for p in problems)
    assert report["submission"]["score"] is None
    assert not report["passed"] and report["run"]["exit_code"] == 0


def test_the_kernel_gets_the_options_it_was_given(run, monkeypatch):
    first, second = (t.id for t in load_tasks(DATA).tasks)
    _, working = run(
        "valid.py", "fallback", placeholder=True, workers=3, fail_task=first, nan_loss=second, budget_s=12.5
    )

    seen = read(working / "seen.json")
    assert seen["env"] == {"PYTHONUNBUFFERED": "1"}
    assert seen["run_request"] == {
        "competition": "local-cpu",
        "budget_s": 12.5,
        "workers": 3,
        "faults": {"fail_task": first, "nan_loss": second},
    }
    # a placeholder run has the public evaluation file beside the test file, as on Kaggle:
    # that is how the kernel tells it from the scoring rerun
    assert "competitions/arc-prize-2024/arc-agi_evaluation_challenges.json" in seen["inputs"]


def test_the_environment_variable_forces_the_fallback(tmp_path, fake_model, monkeypatch):
    monkeypatch.setenv(NO_NAMESPACE_ENV, "1")
    options = SimulationOptions(out=tmp_path / "out", kernel=KERNELS / "valid.py", data=DATA, model=str(fake_model))
    report = simulate(options, echo=lambda line: None)
    assert report["mode"] == "fallback" and NO_NAMESPACE_ENV in report["mode_reason"]
    assert report["limits"]["budget_s"] == 43200  # the local-cpu profile's


def cli(argv: list[str]) -> int:
    from arcsub.cli import simulate as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    return args.func(args)


def test_the_command_runs_a_kernel_and_exits_by_the_verdict(tmp_path, fake_model, capsys):
    common = ["--data", DATA, "--model", str(fake_model), "--budget", "30", "--no-namespace"]
    assert cli(["--kernel", str(KERNELS / "valid.py"), *common, "--out", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr().err
    assert "kernel| dummy kernel: 2 tasks" in shown
    assert "NOT ENFORCED: network" in shown
    assert "submission: valid" in shown and "score: 0/3" in shown and "verdict: passed" in shown
    assert f"report: {tmp_path / 'a' / 'simulation.json'}" in shown

    assert cli(["--kernel", str(KERNELS / "invalid.py"), *common, "--out", str(tmp_path / "b")]) == 1
    shown = capsys.readouterr().err
    assert "submission: INVALID" in shown and "missing" in shown


def test_bad_input_names_the_thing_and_the_fix(tmp_path, fake_model):
    base = {"out": tmp_path / "out", "data": DATA, "model": str(fake_model), "namespace": False}
    with pytest.raises(SimulationError, match="nope.py: kernel script not found; pass `kernel`"):
        simulate(SimulationOptions(kernel=tmp_path / "nope.py", **base))
    with pytest.raises(SimulationError, match="`fail_task` zzz: not among the simulated tasks"):
        simulate(SimulationOptions(kernel=KERNELS / "valid.py", fail_task="zzz", **base))
    with pytest.raises(SimulationError, match="`budget_s` -1: must be positive"):
        simulate(SimulationOptions(kernel=KERNELS / "valid.py", budget_s=-1, **base))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SimulationError, match="did not write .notes.txt.; pass an empty or new `out`"):
        simulate(SimulationOptions(kernel=KERNELS / "valid.py", **base))


def test_the_command_line_shows_the_settings_an_error_names_as_its_flags(tmp_path, fake_model, capsys):
    from arcsub.cli import main

    argv = ["simulate", "--data", DATA, "--model", str(fake_model), "--no-bundle", "--out", str(tmp_path / "out")]
    assert main([*argv, "--budget", "-1"]) == 2
    assert capsys.readouterr().err.endswith("arcsub: error: --budget -1.0: must be positive\n")
    assert main([*argv, "--fail-task", "zzz"]) == 2
    assert "arcsub: error: --fail-task zzz: not among the simulated tasks" in capsys.readouterr().err


@pytest.mark.parametrize("placeholder", [False, True], ids=["rerun", "placeholder"])
def test_the_real_kernels_user_error_is_judged_as_kaggle_would(tmp_path, fake_model, placeholder):
    """The repository's kernel with a model folder that holds no weights (a user error):
    in a scoring rerun it exits 0 with its valid fallback on disk, which Kaggle scores;
    in the placeholder run it exits non-zero, a failed version the user sees."""
    report = simulate(
        SimulationOptions(
            out=tmp_path / "out", data=DATA, model=str(fake_model), budget_s=120, placeholder=placeholder
        ),
        echo=lambda line: None,
    )
    assert report["submission"]["valid"]
    assert report["kernel_report"]["mode"] == "failed" and "no model folder" in report["kernel_report"]["error"]
    if placeholder:
        assert report["run"]["exit_code"] == 2 and not report["passed"]
        assert report["failures"] == [
            "the kernel exited with code 2: the version fails on Kaggle and cannot be submitted"
        ]
    else:
        assert report["run"]["exit_code"] == 0 and report["passed"], report["failures"]


def _marked(mark: str) -> list[psutil.Process]:
    """The live processes whose environment carries ARCSUB_TEST_MARK=mark: the arcsub
    command and everything it started (the kernel gets the caller's environment)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("ARCSUB_TEST_MARK") == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s  # a guard against a hang, not a timing assertion
    while not path.exists():
        assert proc.poll() is None, f"arcsub ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("mode", "signum"),
    [
        pytest.param("namespace", signal.SIGTERM, marks=MODES[0].marks),
        ("fallback", signal.SIGTERM),
        ("fallback", signal.SIGINT),
    ],
)
def test_a_stop_signal_ends_the_kernel_and_everything_it_started(tmp_path, fake_model, mode, signum):
    mark, ready = uuid.uuid4().hex, tmp_path / "ready"
    argv = [ARCSUB, "simulate", "--kernel", str(KERNELS / "stubborn.py"), "--data", DATA, "--model", str(fake_model)]
    argv += ["--budget", "300", "--out", str(tmp_path / "out"), *(["--no-namespace"] if mode == "fallback" else [])]
    env = os.environ | {"ARCSUB_TEST_MARK": mark, "DUMMY_READY": str(ready)}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = []
    try:
        _wait_for(ready, proc)
        started = _marked(mark)  # arcsub, the kernel, its worker and the worker's own (+ unshare, the supervisor)
        assert len(started) >= (6 if mode == "namespace" else 4), started
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        name = signal.Signals(signum).name
        assert proc.returncode == 128 + signum, err
        assert f"arcsub: stopped by {name}; the kernel's 3 processes were ended\n" in err.decode()
        assert f"mode: {mode}" in err.decode()
        deadline = time.monotonic() + 10  # the namespace's processes die with its first one, just after
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _marked(mark) == []
    finally:
        for process in _marked(mark):  # what a failure left behind
            process.kill()
