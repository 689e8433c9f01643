"""Simulating from a built bundle, as Kaggle would run it: the bundle's kernel script,
its model dataset, its wheels dataset, and a Python that has the wheel set installed
offline but not arcsub (the kernel's own install step puts arcsub in, every run).

With ``over_image`` the Python is a fresh copy of a replica of that image's environment
(``arcsub.bundle.replica``) instead, holding none of the set: the kernel installs the
whole set over the image's packages itself, inside the run's time budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .tree import SimulationError

VENV_DIR = "venv"  # OUT/venv: the run's environment (an overlay on the cached base)


@dataclass(frozen=True)
class BundleInputs:
    kernel: Path
    model_dir: Path
    wheels: Path
    python: Path
    manifest: dict


def bundle_inputs(bundle: Path, out: Path, *, echo, over_image: str | None = None) -> BundleInputs:
    from ..bundle import KERNEL, MODEL, WHEELS, BuildError, base_venv, overlay_venv, read_manifest
    from ..models import cache_root

    try:
        manifest = read_manifest(bundle)
    except BuildError as exc:
        raise SimulationError(str(exc)) from None
    if manifest["target"] != "cpu":
        raise SimulationError(
            f"{bundle}: built for the {manifest['target']} target, which does not install here; "
            "build the cpu target to simulate a bundle (python build_kernel.py --target cpu), or pass --no-bundle"
        )
    if not manifest["wheels"].get("complete", True):
        raise SimulationError(f"{bundle}: built without its wheel set (--no-download); rebuild it to simulate it")
    if over_image is not None:
        python = replica_python(over_image, manifest, out / VENV_DIR, echo=echo)
    else:
        base = base_venv(bundle / WHEELS, cache=cache_root() / "bundle-venvs", echo=echo)
        python = overlay_venv(base, out / VENV_DIR)
    kernel = bundle / KERNEL / "main.py"
    if not kernel.is_file():
        raise SimulationError(f"{kernel}: the bundle has no kernel script; rebuild it")
    return BundleInputs(kernel.resolve(), (bundle / MODEL).resolve(), (bundle / WHEELS).resolve(), python, manifest)


def replica_python(image_name: str, manifest: dict, dest: Path, *, echo) -> Path:
    """A fresh copy of the image replica for the bundle's target at ``dest``; its python."""
    from ..bundle import copy_replica, ensure_replica, image_list_path, read_image_list, repository_root

    root = repository_root()
    image = read_image_list(image_list_path(image_name, root))
    replica, _record = ensure_replica(image, manifest["target"], manifest["python"], root, echo=echo)
    echo(f"the kernel's Python: a fresh copy of the {image_name} replica ({replica})")
    return copy_replica(replica, dest)
