"""Build the offline bundle: three upload folders under ``build/kaggle/``.

    wheels/   the pinned wheel set of the target + arcsub's own wheel, flat, + dataset-metadata.json
    model/    the prepared model folder (+ arcsub.toml from --config), flat, + dataset-metadata.json
    kernel/   main.py (the repository's kernel/main.py) + kernel-metadata.json
    bundle.json   what was built, from what, for which target (read by push, check, simulate)

The folder is assembled beside its final place and swapped in only when every metadata
rule and the secret scan pass, so a failed build never costs the previous bundle.
Downloaded wheels live in a cache (``~/.cache/arcsub/wheels/<target>``) and are
hard-linked into the folder, so switching targets does not download gigabytes again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_dir, folder_bytes, write_json_atomic
from ..kernel import INSTALL_PLAN
from .manifest import CONFIG_NAME, DEFAULT_BUILD, KERNEL, MANIFEST, MODEL, WHEELS, WHEELS_DATASET, BuildError
from .metadata import DATASET_METADATA, KERNEL_METADATA, PLACEHOLDER_OWNER
from .push import kaggle_config_dirs


@dataclass
class BuildOptions:
    target: str = "kaggle"
    out: Path = DEFAULT_BUILD
    model: Path | None = None  # a prepared model folder (the command line resolves names such as default)
    config: Path | None = None  # copied to model/arcsub.toml
    competition: str | None = None  # competition profile (default: arc-prize-2024)
    owner: str | None = None  # Kaggle username (default: from the Kaggle credentials)
    wheels_slug: str = WHEELS_DATASET
    model_slug: str = "arcsub-model"
    kernel_slug: str | None = None  # default: arcsub-<competition slug>
    download: bool = True  # False: the wheels folder holds arcsub's wheel only (metadata work, tests)


# ---------------------------------------------------------------- sources
def repository_root() -> Path:
    """The source checkout arcsub runs from (pyproject.toml + src/ + kernel/main.py)."""
    import arcsub

    root = Path(arcsub.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "kernel" / "main.py").is_file():
        raise BuildError(
            f"{root}: arcsub is not running from its source checkout; build from a clone (pip install -e .)"
        )
    return root


def kaggle_username(env=os.environ) -> str | None:
    """The username the kaggle CLI will push as: KAGGLE_USERNAME, else kaggle.json's."""
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    for folder in kaggle_config_dirs(env):
        try:
            return json.loads((folder / "kaggle.json").read_text())["username"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def git_commit(root: Path) -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def build_arcsub_wheel(root: Path, dest: Path, *, echo: Callable[[str], None]) -> Path:
    """arcsub's wheel, built from a copy of the sources: setuptools leaves build/lib
    behind in the tree it builds, and stale files there would ride along."""
    with tempfile.TemporaryDirectory(prefix="arcsub-wheel-") as tmp:
        source = Path(tmp) / "src-tree"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, source / name)
        shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        command += ["--no-index", "-w", str(dest), str(source)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"building arcsub's wheel failed: {(done.stderr or done.stdout).strip()[-400:]}")
    wheels = sorted(dest.glob("arcsub-*.whl"))
    if not wheels:
        raise BuildError(f"pip wheel left no arcsub-*.whl in {dest}")
    echo(f"built {wheels[-1].name}")
    return wheels[-1]


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(source, target)


# ---------------------------------------------------------------- the three folders
def write_wheels(folder: Path, target, root: Path, arcsub_wheel: Path, *, download: bool, echo) -> list[str]:
    from .wheelset import download as download_set

    folder.mkdir()
    names = []
    if download:
        cache = wheel_cache(target.name)
        for path in download_set(target, root, cache, echo=echo):
            link_or_copy(path, folder / path.name)
            names.append(path.name)
    link_or_copy(arcsub_wheel, folder / arcsub_wheel.name)
    names.append(arcsub_wheel.name)
    write_json_atomic(folder / INSTALL_PLAN, target.install_plan(), indent=1)
    return sorted(names)


def wheel_cache(target: str) -> Path:
    from ..models import cache_root

    path = cache_root() / "wheels" / target
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_model(folder: Path, model: Path | None, config: Path | None, *, echo) -> Path:
    from ..config import load_config
    from ..models import model_folder

    if model is None:
        raise BuildError("no model folder given for the bundle; give a prepared model folder")
    source = model_folder(model).resolve()
    subfolders = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subfolders:
        # `kaggle datasets create --dir-mode skip` uploads files only: a subfolder would vanish.
        raise BuildError(
            f"{source}: holds folders ({', '.join(subfolders[:3])}); the model dataset must be flat: "
            "pass the folder with config.json and the weights"
        )
    folder.mkdir()
    for entry in sorted(source.iterdir()):
        if entry.is_file():  # dot files too: the secret scan must see a stray .env
            link_or_copy(entry, folder / entry.name)
    if config is not None:
        load_config(config)  # a bad config fails the build, not the Kaggle run
        shutil.copy2(config, folder / CONFIG_NAME)
    return source


def write_kernel(folder: Path, root: Path, meta: dict) -> None:
    folder.mkdir()
    shutil.copy2(root / "kernel" / "main.py", folder / meta["code_file"])
    write_json_atomic(folder / KERNEL_METADATA, meta, indent=2)


# ---------------------------------------------------------------- the build
def build_bundle(options: BuildOptions, *, echo: Callable[[str], None] | None = None) -> dict:
    """Write the bundle to ``options.out``; return its manifest (also ``out/bundle.json``)."""
    from ..competitions import load_competition
    from ..console import say
    from .metadata import check_upload_folder, dataset_metadata, kernel_metadata
    from .secrets import refuse_secrets
    from .wheelset import get_target, requirements_path

    echo = echo or say
    started = time.monotonic()
    target = get_target(options.target)
    root = repository_root()
    if options.download and not requirements_path(target, root).is_file():
        raise BuildError(
            f"{requirements_path(target, root)}: no pinned set for target {target.name}; "
            f"lock it first (arcsub bundle lock --target {target.name})"
        )
    competition = load_competition(options.competition)
    owner = options.owner or kaggle_username()
    if owner is None:
        owner = PLACEHOLDER_OWNER
        echo(f"no Kaggle username found (KAGGLE_USERNAME, ~/.kaggle/kaggle.json): ids use {owner!r}; "
             "pass --owner before pushing")  # fmt: skip
    kernel_slug = options.kernel_slug or f"arcsub-{competition.slug}"
    out = Path(options.out)
    echo(f"building the {target.name} bundle in {out} (profile {competition.name}, owner {owner})")

    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory(prefix="arcsub-build-") as scratch:
        arcsub_wheel = build_arcsub_wheel(root, Path(scratch), echo=echo)
        wheel_names = write_wheels(
            tmp / WHEELS, target, root, arcsub_wheel, download=options.download, echo=echo
        )  # fmt: skip
        write_json_atomic(
            tmp / WHEELS / DATASET_METADATA,
            dataset_metadata(owner=owner, slug=options.wheels_slug, title=f"arcsub wheels ({target.name})"),
            indent=2,
        )
        model_source = write_model(tmp / MODEL, options.model, options.config, echo=echo)
        write_json_atomic(
            tmp / MODEL / DATASET_METADATA,
            dataset_metadata(owner=owner, slug=options.model_slug, title="arcsub model"),
            indent=2,
        )
        kernel_meta = kernel_metadata(
            owner=owner,
            slug=kernel_slug,
            title=kernel_slug.replace("-", " "),  # Kaggle names a new kernel after its title's slug
            machine_shape=competition.machine.shape,
            competition=competition.slug,
            dataset_sources=[f"{owner}/{options.wheels_slug}", f"{owner}/{options.model_slug}"],
        )
        write_kernel(tmp / KERNEL, root, kernel_meta)
        folders = [tmp / WHEELS, tmp / MODEL, tmp / KERNEL]
        refuse_secrets(folders)
        for folder in folders:
            check_upload_folder(folder)
        manifest = {
            "target": target.name,
            "python": target.python_version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "arcsub_wheel": arcsub_wheel.name,
            "git_commit": git_commit(root),
            "profile": competition.name,
            "owner": owner,
            "model_source": str(model_source),
            "config": str(options.config) if options.config else None,
            "wheels": {"count": len(wheel_names), "bytes": folder_bytes(tmp / WHEELS), "complete": options.download},
            "model_bytes": folder_bytes(tmp / MODEL),
            "datasets": [f"{owner}/{options.wheels_slug}", f"{owner}/{options.model_slug}"],
            "kernel": kernel_meta["id"],
        }
        write_json_atomic(tmp / MANIFEST, manifest, indent=1)
    gib = (manifest["wheels"]["bytes"] + manifest["model_bytes"]) / 2**30
    echo(
        f"bundle ready in {out}: {manifest['wheels']['count']} wheels, model from {model_source}, "
        f"{gib:.2f} GiB, {time.monotonic() - started:.0f} s"
    )
    return manifest
