"""What a built bundle is, for everything that reads one after the build (check, push,
the simulator): the three upload folders beside ``bundle.json``, what goes in the
wheels dataset, and the manifest itself."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArcsubError
from ..io import read_json

DEFAULT_BUILD = Path("build") / "kaggle"
MANIFEST = "bundle.json"
WHEELS, MODEL, KERNEL = "wheels", "model", "kernel"
CONFIG_NAME = "arcsub.toml"  # where the kernel looks for its config (kernel/inputs.py)
WHEELS_DATASET = "arcsub-wheels"  # the wheels dataset's default slug: its folder under the input root


class BuildError(ArcsubError):
    """The bundle cannot be built as asked, or what is there is not a bundle."""


def read_manifest(build: Path) -> dict:
    path = Path(build) / MANIFEST
    manifest = read_json(
        path,
        BuildError,
        missing="no bundle there; build one first (python build_kernel.py --target cpu)",
        fix="rebuild the bundle",
    )
    if not isinstance(manifest, dict) or "target" not in manifest:
        raise BuildError(f"{path}: not a bundle manifest; rebuild the bundle")
    return manifest


def is_wheels_dataset_file(name: str) -> bool:
    """What the kernel reads from the wheels dataset: the wheels, and its install plan
    (``INSTALL_FILE`` in kernel/main.py: what to remove from the image first)."""
    from ..kernel import INSTALL_PLAN  # here: reading a manifest (push, the CLI) needs no kernel

    return name.endswith(".whl") or name == INSTALL_PLAN
