"""``arcsub bundle check``: prove that a built bundle works offline.

Both targets: the wheel set is closed (every requirement of every wheel, arcsub's
included, is met inside the set for the target's Python and platform tags) and its size
is reported against Kaggle's dataset limit.

``cpu`` (this machine): a fresh environment installs the set with ``--no-index`` and
nothing else, imports arcsub and its engines, and the kernel's smoke run goes through
the simulator with the bundle (its own offline install step included): the simulator
sits above the bundle, so the caller passes that run in (``smoke``, which is
``arcsub.simulate.smoke_run``).

``kaggle``: the CUDA builds are never installed here. The proof reads each wheel's
metadata: from the files when the bundle downloaded them, else from the package index
(PEP 658 metadata, cached), for the pinned set plus arcsub's own wheel.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import ArcsubError
from .build import repository_root
from .manifest import KERNEL, MODEL, WHEELS, read_manifest

IMPORTS = "import arcsub, torch, transformers, peft, vllm; print(arcsub.__version__, torch.__version__)"


class CheckError(ArcsubError):
    """The bundle failed a check."""


class SmokeRun(Protocol):
    """The kernel's smoke run of the bundle in ``build`` (``arcsub.simulate.smoke_run``):
    what it found, or a :class:`CheckError`."""

    def __call__(
        self, build: Path, out: Path | None, budget_s: float, *, echo: Callable[[str], None],
        over_image: str | None = None,
    ) -> dict: ...  # fmt: skip


def prove_set(build: Path, target, *, echo: Callable[[str], None]):
    """The closure report of the bundle's wheels (files, or the index for pins not downloaded)."""
    from .wheelset import (
        parse_requirements,
        prove_closed,
        requirements_path,
        size_line,
        wheel_info_from_file,
        wheel_infos_from_index,
    )

    files = sorted((build / WHEELS).glob("*.whl"))
    infos = [wheel_info_from_file(p) for p in files]
    have = {p.name for p in files}
    pins = parse_requirements(requirements_path(target, repository_root()))
    missing = [pin for pin in pins if pin.filename not in have]
    if missing:
        echo(f"{len(missing)} of {len(pins)} pinned wheels are not in {build / WHEELS}: reading their metadata "
             "from the package index")  # fmt: skip
        infos += wheel_infos_from_index(missing, target)
    report = prove_closed(infos, target, extra_requirements=target.pins)
    echo(size_line(report))
    for name in report.dropped_used:
        echo(f"left out on purpose: {name}")
    if not report.ok:
        raise CheckError(
            f"the {target.name} wheel set is not closed ({len(report.problems)} problem(s)):\n"
            + "\n".join(report.problems)
        )
    echo(f"closed: every requirement of the {report.count} wheels is met inside the set for {target.name}")
    return report


def offline_install(build: Path, *, echo: Callable[[str], None]) -> list[str]:
    """Fresh base environment from the bundle (no index, no pip configuration), then an
    overlay with arcsub's wheel; imports arcsub and the engines there. Returns what
    ``pip check`` says about the overlay."""
    from ..models import cache_root
    from .venv import arcsub_wheel, base_venv, install_offline, offline_pip_env, overlay_venv, run_checked

    base = base_venv(build / WHEELS, cache=cache_root() / "bundle-venvs", fresh=True, echo=echo)
    with tempfile.TemporaryDirectory(prefix="arcsub-check-") as tmp:
        python = overlay_venv(base, Path(tmp) / "venv")
        install_offline(python, [arcsub_wheel(build / WHEELS)], "pip install arcsub's wheel")
        done = run_checked([python, "-c", IMPORTS], "importing arcsub, torch, transformers, peft, vllm")
        echo(f"offline install works: arcsub {done.stdout.split()[0]}, torch {done.stdout.split()[1]} import")
        broken = subprocess.run(
            [str(python), "-m", "pip", "check"], check=False, capture_output=True, text=True, env=offline_pip_env()
        ).stdout.splitlines()  # fmt: skip
    return broken


def check_bundle(
    build: Path,
    *,
    smoke: SmokeRun,
    out: Path | None = None,
    budget_s: float = 300.0,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Run the target's checks on the bundle in ``build``; returns what was found. The cpu
    target ends with ``smoke(build, out, budget_s, echo=echo)``."""
    from ..console import say
    from .metadata import check_upload_folder
    from .secrets import refuse_secrets
    from .wheelset import get_target

    echo = echo or say
    build = Path(build)
    manifest = read_manifest(build)
    target = get_target(manifest["target"])
    echo(f"checking the {target.name} bundle in {build} (built {manifest['built_at']} from {manifest['git_commit']})")
    folders = [build / WHEELS, build / MODEL, build / KERNEL]
    refuse_secrets(folders)
    for folder in folders:
        check_upload_folder(folder)
    echo("metadata: every kaggle CLI rule holds; no credentials in the upload folders")
    closure = prove_set(build, target, echo=echo)
    result = {"target": target.name, "wheels": closure.count, "bytes": closure.total_size}
    if target.name != "cpu":
        if not manifest["wheels"].get("complete", True):
            echo("note: the wheels folder holds arcsub's wheel only (built with --no-download): the proof is of "
                 "the pinned set; rebuild without --no-download before pushing")  # fmt: skip
        return result
    if not manifest["wheels"].get("complete", True):
        raise CheckError(f"{build}: built without its wheel set (--no-download); rebuild to check it offline")
    broken = offline_install(build, echo=echo)
    unmet = [
        line for line in broken
        if line.strip() and "No broken requirements" not in line and not any(n in line.lower() for n in target.dropped)
    ]  # fmt: skip
    if unmet:
        raise CheckError("pip check in the offline environment: " + "; ".join(unmet[:5]))
    result["smoke"] = smoke(build, out, budget_s, echo=echo)
    return result
