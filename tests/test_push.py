"""``arcsub push`` with the real kaggle CLI (2.2.5) against a fake Kaggle API on loopback."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_kaggle import FakeKaggle

from arcsub.bundle.build import PLACEHOLDER_OWNER
from arcsub.bundle.metadata import MetadataError
from arcsub.bundle.push import PushError, Step, _run, kaggle_executable, push
from arcsub.errors import ArcsubError

OWNER = "alice"
WHEELS = f"{OWNER}/arcsub-wheels"
MODEL = f"{OWNER}/arcsub-model"
KERNEL = f"{OWNER}/arcsub-arc-solver"
MAIN_PY = 'print("hello from the kernel")\n# ünïcode survives\n'


@pytest.fixture(autouse=True)
def kaggle_cli_installed():
    """setup.sh installs the kaggle CLI (a dev dependency): without it these tests fail
    rather than skip, so a suite that did not drive the real CLI never reads as green."""
    if not (Path(sys.executable).parent / "kaggle").is_file():
        pytest.fail(f"no kaggle CLI beside {sys.executable}: run scripts/setup.sh (it installs kaggle==2.2.5)")


def _tiny_wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("arcsub/__init__.py", "")
    return buffer.getvalue()


WHEEL_BYTES = _tiny_wheel()


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_build(root: Path, owner: str = OWNER, **kernel_overrides) -> Path:
    """build/kaggle/{wheels,model,kernel} as the bundle builder writes them (small)."""
    build = root / "build" / "kaggle"
    wheels, model = (ref.replace(OWNER, owner, 1) for ref in (WHEELS, MODEL))
    for name, ref, title, files in (
        ("wheels", wheels, "arcsub wheels", {"arcsub-0.1.0-py3-none-any.whl": WHEEL_BYTES}),
        ("model", model, "arcsub model", {"config.json": b'{"model_type": "llama"}', "weights.bin": bytes(range(256))}),
    ):
        folder = build / name
        folder.mkdir(parents=True)
        for file, data in files.items():
            (folder / file).write_bytes(data)
        _write_json(folder / "dataset-metadata.json", {"id": ref, "title": title, "licenses": [{"name": "CC0-1.0"}]})
    kernel = build / "kernel"
    kernel.mkdir()
    (kernel / "main.py").write_text(MAIN_PY, encoding="utf-8")
    meta = {
        "id": KERNEL.replace(OWNER, owner, 1),
        "title": "arcsub arc solver",
        "code_file": "main.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": False,
        "machine_shape": "NvidiaTeslaT4",
        "competition_sources": ["arc-prize-2025"],
        "dataset_sources": [wheels, model],
        "model_sources": [],
        "kernel_sources": [],
    }
    meta.update(kernel_overrides)
    _write_json(kernel / "kernel-metadata.json", meta)
    return build


@pytest.fixture
def fake():
    server = FakeKaggle().start()
    yield server
    server.stop()


@pytest.fixture
def cli_env(fake, tmp_path):
    """The CLI's environment: a temporary HOME, fake credentials, requests sent to the fake."""
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy", "all_proxy")}
    env = {k: v for k, v in env.items() if not k.startswith("KAGGLE_")}
    env.update(fake.env(), HOME=str(home), TMPDIR=str(home / "tmp"), KAGGLE_USERNAME=OWNER, KAGGLE_KEY="not-a-key")
    return env


def test_push_creates_datasets_then_pushes_kernel(fake, cli_env, tmp_path):
    build = make_build(tmp_path)
    lines = []
    result = push(build, env=cli_env, message="first", echo=lines.append)

    assert result.kernel_url == f"https://www.kaggle.com/code/{KERNEL}"
    assert result.datasets == {WHEELS: "create", MODEL: "create"}
    status = "datasets.DatasetApiService/GetDatasetStatus"
    upload = ["blobs.BlobApiService/StartBlobUpload", "PUT /upload"]
    create = "datasets.DatasetApiService/CreateDataset"
    # arcsub's `datasets status`, then `datasets create` (which checks the slug again
    # itself), then `datasets status` until the upload is processed
    assert fake.endpoints() == [
        *[status, status, *upload, create, status],
        *[status, status, *upload, *upload, create, status],
        "kernels.KernelsApiService/SaveKernel",
    ]
    created = [r.body for r in fake.calls("datasets.DatasetApiService/CreateDataset")]
    assert [(b["ownerSlug"], b["slug"], b["licenseName"], b["isPrivate"]) for b in created] == [
        (OWNER, "arcsub-wheels", "CC0-1.0", True),
        (OWNER, "arcsub-model", "CC0-1.0", True),
    ]
    # every file's bytes arrived, and each dataset names the tokens of its own files
    uploaded = {r.body["name"]: r.body["contentLength"] for r in fake.calls("blobs.BlobApiService/StartBlobUpload")}
    assert uploaded == {"arcsub-0.1.0-py3-none-any.whl": len(WHEEL_BYTES), "config.json": 23, "weights.bin": 256}
    assert sorted(fake.uploads.values()) == sorted([WHEEL_BYTES, b'{"model_type": "llama"}', bytes(range(256))])
    assert [len(b["files"]) for b in created] == [1, 2]

    (save,) = fake.calls("kernels.KernelsApiService/SaveKernel")
    body = save.body
    assert body["slug"] == KERNEL
    assert body["text"] == MAIN_PY
    assert body["language"] == "python" and body["kernelType"] == "script"
    assert body["enableInternet"] is False
    assert body["enableGpu"] is True
    assert body["isPrivate"] is True
    assert body["machineShape"] == "NvidiaTeslaT4"
    assert body["datasetDataSources"] == [WHEELS, MODEL]
    assert body["competitionDataSources"] == ["arc-prize-2025"]
    assert any(result.kernel_url in line for line in lines)


def test_existing_datasets_get_a_new_version(fake, cli_env, tmp_path):
    fake.existing_datasets.update({WHEELS, MODEL})
    result = push(make_build(tmp_path), env=cli_env, message="retrained adapters", echo=lambda _: None)

    assert result.datasets == {WHEELS: "version", MODEL: "version"}
    assert not fake.calls("datasets.DatasetApiService/CreateDataset")
    versions = [r.body for r in fake.calls("datasets.DatasetApiService/CreateDatasetVersion")]
    assert [(b["ownerSlug"], b["datasetSlug"], b["body"]["versionNotes"]) for b in versions] == [
        (OWNER, "arcsub-wheels", "retrained adapters"),
        (OWNER, "arcsub-model", "retrained adapters"),
    ]
    assert result.kernel_url == f"https://www.kaggle.com/code/{KERNEL}"


def test_kernel_error_fails_although_the_cli_exits_0(fake, cli_env, tmp_path):
    fake.kernel_error = "Notebook not found"
    with pytest.raises(PushError, match="Kernel push error: Notebook not found") as caught:
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None)
    assert isinstance(caught.value, ArcsubError)
    assert "\n" not in str(caught.value)
    assert len(fake.calls("kernels.KernelsApiService/SaveKernel")) == 1


def test_invalid_sources_fail(fake, cli_env, tmp_path):
    fake.kernel_invalid_dataset_sources = [MODEL]
    with pytest.raises(PushError, match="not valid dataset sources"):
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None)


@pytest.mark.parametrize(("status", "error"), [(403, "Permission denied"), (None, "Title already in use")])
def test_dataset_error_stops_the_push(fake, cli_env, tmp_path, status, error):
    fake.dataset_error_status, fake.dataset_error = status, error
    with pytest.raises(PushError, match=f"dataset {WHEELS}.*{error}"):
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None)
    assert not fake.calls("kernels.KernelsApiService/SaveKernel")  # nothing after the failure
    assert len(fake.calls("datasets.DatasetApiService/CreateDataset")) == 1


def test_a_dataset_kaggle_cannot_process_stops_the_push(fake, cli_env, tmp_path):
    fake.processed_status = "FAILED"
    with pytest.raises(PushError, match=f"dataset {WHEELS}: Kaggle could not process the upload"):
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None)
    assert not fake.calls("kernels.KernelsApiService/SaveKernel")


def test_a_dataset_still_processing_times_out(fake, cli_env, tmp_path):
    fake.processed_status = "BLOBS_RECEIVED"
    with pytest.raises(PushError, match=f"dataset {WHEELS}: not ready after 0 s .*blobs_received"):
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None, ready_wait_s=0)
    assert not fake.calls("kernels.KernelsApiService/SaveKernel")


def test_a_cpu_target_bundle_is_not_pushed(fake, cli_env, tmp_path):
    build = make_build(tmp_path)
    _write_json(build / "bundle.json", {"target": "cpu"})
    with pytest.raises(PushError, match="built for the cpu target"):
        push(build, env=cli_env, echo=lambda _: None)
    _write_json(build / "bundle.json", {"target": "kaggle", "wheels": {"complete": False}})
    with pytest.raises(PushError, match="built with --no-download"):
        push(build, env=cli_env, echo=lambda _: None)
    assert fake.requests == []


def test_dry_run_runs_nothing(fake, cli_env, tmp_path):
    lines = []
    result = push(make_build(tmp_path), env=cli_env, dry_run=True, echo=lines.append)
    assert fake.requests == []
    assert result.dry_run and result.kernel_url is None
    text = "\n".join(lines)
    assert f"kaggle datasets status {WHEELS}" in text
    assert "datasets create -p" in text and "datasets version -p" in text
    assert "kaggle kernels push -p" in text
    assert '"enable_internet": false' in text and '"title": "arcsub model"' in text


def test_a_kernel_without_an_uploaded_dataset_is_refused(fake, cli_env, tmp_path):
    build = make_build(tmp_path, dataset_sources=[WHEELS])  # the model left out: the kernel would run without it
    with pytest.raises(PushError) as caught:
        push(build, env=cli_env, echo=lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert str(build / "kernel" / "kernel-metadata.json") in message
    assert f"dataset_sources lacks {json.dumps(MODEL)}" in message and "add it" in message
    assert WHEELS not in message
    assert fake.requests == []
    # a pinned version names the dataset too
    pinned = make_build(tmp_path / "pinned", dataset_sources=[f"{WHEELS}/3", MODEL])
    assert push(pinned, env=cli_env, echo=lambda _: None).kernel_url


def test_the_placeholder_owner_is_refused_before_anything_runs(fake, cli_env, tmp_path):
    build = make_build(tmp_path, owner=PLACEHOLDER_OWNER)
    with pytest.raises(PushError) as caught:
        push(build, env=cli_env, echo=lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert f"placeholder owner {json.dumps(PLACEHOLDER_OWNER)}" in message
    for where in (
        "wheels/dataset-metadata.json id",
        "model/dataset-metadata.json id",
        "kernel/kernel-metadata.json id",
    ):
        assert where in message
    assert "dataset_sources" in message
    assert "python build_kernel.py --owner YOU" in message
    assert fake.requests == []
    # a dry run shows the commands, then says that a real push would refuse
    lines = []
    with pytest.raises(PushError, match=f"a real push would refuse this bundle: .*{PLACEHOLDER_OWNER}"):
        push(build, env=cli_env, dry_run=True, echo=lines.append)
    assert any(line.startswith("kaggle kernels push -p") for line in lines)
    assert fake.requests == []


def test_missing_credentials_stop_before_anything_runs(fake, cli_env, tmp_path):
    del cli_env["KAGGLE_USERNAME"], cli_env["KAGGLE_KEY"]
    with pytest.raises(PushError, match="no Kaggle credentials"):
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None)
    assert fake.requests == []
    kaggle_dir = Path(cli_env["HOME"]) / ".kaggle"
    kaggle_dir.mkdir()
    (kaggle_dir / "kaggle.json").write_text(json.dumps({"username": OWNER, "key": "not-a-key"}))
    assert push(make_build(tmp_path / "again"), env=cli_env, echo=lambda _: None).kernel_url


def test_metadata_problems_stop_before_anything_runs(fake, cli_env, tmp_path):
    # the rules of metadata.py, which the build checked too
    with pytest.raises(MetadataError, match="kernel-metadata.json: enable_internet is true; .*set it to false"):
        push(make_build(tmp_path / "a", enable_internet=True), env=cli_env, echo=lambda _: None)
    with pytest.raises(MetadataError, match='kernel-metadata.json: code_file "missing.py" is not a file'):
        push(make_build(tmp_path / "b", code_file="missing.py"), env=cli_env, echo=lambda _: None)
    build = make_build(tmp_path / "bb")
    _write_json(build / "model" / "dataset-metadata.json", {"id": OWNER, "title": "arcsub model", "licenses": []})
    with pytest.raises(MetadataError, match='model/dataset-metadata.json: id is "alice"; write "owner/dataset-slug"'):
        push(build, env=cli_env, echo=lambda _: None)
    build = make_build(tmp_path / "c")
    (build / "model" / "dataset-metadata.json").unlink()
    with pytest.raises(PushError, match="model/dataset-metadata.json: missing"):
        push(build, env=cli_env, echo=lambda _: None)
    # a rule only the full check knows (the CLI's 6-character dataset title), and a
    # credential dropped into an upload folder after the build
    build = make_build(tmp_path / "d")
    meta = json.loads((build / "model" / "dataset-metadata.json").read_text())
    _write_json(build / "model" / "dataset-metadata.json", {**meta, "title": "model"})
    with pytest.raises(ArcsubError, match="title"):
        push(build, env=cli_env, echo=lambda _: None)
    build = make_build(tmp_path / "e")
    (build / "model" / "kaggle.json").write_text('{"username": "alice", "key": "x"}')
    with pytest.raises(ArcsubError, match="kaggle.json"):
        push(build, env=cli_env, echo=lambda _: None)
    assert fake.requests == []


def test_cli_push_command(fake, cli_env, tmp_path, monkeypatch, capsys):
    from arcsub.cli import push as push_cli

    parser = argparse.ArgumentParser(prog="arcsub")
    push_cli.register(parser.add_subparsers(dest="command", required=True))
    build = make_build(tmp_path)
    for key in [
        k for k in os.environ if k.lower() in ("no_proxy", "https_proxy", "all_proxy") or k.startswith("KAGGLE_")
    ]:
        monkeypatch.delenv(key)
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)

    args = parser.parse_args(["push", "--build", str(build), "--dry-run"])
    assert args.func(args) == 0
    assert fake.requests == []
    args = parser.parse_args(["push", "--build", str(build), "-m", "notes"])
    assert args.func(args) == 0
    assert f"https://www.kaggle.com/code/{KERNEL}" in capsys.readouterr().err
    assert len(fake.calls("kernels.KernelsApiService/SaveKernel")) == 1


def test_kaggle_executable_is_the_venvs():
    assert Path(kaggle_executable()).parent == Path(sys.executable).parent


def _kaggle_children() -> list:
    """The kaggle CLI processes this test process started that are still there."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(part.endswith("/kaggle") for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_a_server_that_never_answers_is_given_up_on(fake, cli_env, tmp_path):
    fake.hang.add("datasets.DatasetApiService/GetDatasetStatus")
    with pytest.raises(PushError, match=f"`kaggle datasets status {WHEELS}` made no progress for 3 s") as caught:
        push(make_build(tmp_path), env=cli_env, echo=lambda _: None, no_progress_s=3)
    assert "\n" not in str(caught.value)
    assert len(fake.calls("datasets.DatasetApiService/GetDatasetStatus")) == 1  # it was waiting on the server
    assert _kaggle_children() == []  # the CLI was ended, not left waiting


def test_output_keeps_a_command_alive_and_the_overall_cap_still_holds(tmp_path):
    # a stand-in for an upload's progress bar: a line redrawn on stderr every 0.2 s for 1.6 s
    bar = "import sys, time\nfor i in range(9):\n    print(f'\\r{i}%|', end='', file=sys.stderr, flush=True)\n    time.sleep(0.2)"
    step = _run(Step([sys.executable, "-c", bar]), os.environ, tmp_path, no_progress_s=1)
    assert step.returncode == 0 and "8%|" in step.stderr
    with pytest.raises(PushError, match="still running after 1 s"):
        _run(Step([sys.executable, "-c", bar]), os.environ, tmp_path, no_progress_s=1, cap_s=1)


def test_sigterm_while_the_cli_waits_on_kaggle_ends_the_cli_too(fake, cli_env, tmp_path):
    import psutil

    fake.hang.add("datasets.DatasetApiService/GetDatasetStatus")
    arcsub = str(Path(sys.executable).with_name("arcsub"))
    proc = subprocess.Popen(
        [arcsub, "push", "--build", str(make_build(tmp_path))],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children = []
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while not fake.calls("datasets.DatasetApiService/GetDatasetStatus"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any(part.endswith("/kaggle") for c in children for part in c.cmdline()), children
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert f"arcsub: stopped by SIGTERM; the kaggle CLI (`kaggle datasets status {WHEELS}`) was ended\n" in err
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        for child in children:  # what a failure left behind
            if child.is_running():
                child.kill()
        if proc.poll() is None:
            proc.kill()
