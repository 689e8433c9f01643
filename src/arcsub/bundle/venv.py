"""Virtual environments made from a bundle's wheels, with nothing else.

A *base* environment holds every wheel of the set except arcsub's own, installed with
``--no-index --no-deps`` and pip's configuration switched off (no find-links, no
constraints): what a Kaggle image gets from the wheels dataset. It is cached by the set's
contents, since torch and vLLM take minutes to install.

An *overlay* is a fresh, pip-less environment whose ``site-packages`` points at a base
through a ``.pth`` file: the base's packages import, and pip (run from the base) installs
into the overlay. The kernel's own offline install step then runs for real on arcsub's
wheel in every simulation, as it would on Kaggle, without reinstalling torch each time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import ArcsubError

ARCSUB_PREFIX = "arcsub-"
READY_STAMP = ".arcsub-base-ready"
BASE_LINK = "_arcsub_bundle_base.pth"


class VenvError(ArcsubError):
    """A bundle environment could not be made."""


def offline_pip_env(env=None) -> dict[str, str]:
    """The environment for an offline install: no pip configuration files or PIP_*
    settings (this machine's find-links and constraints are not on Kaggle), no index."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def third_party_wheels(wheels: Path) -> list[Path]:
    return sorted(p for p in Path(wheels).glob("*.whl") if not p.name.startswith(ARCSUB_PREFIX))


def arcsub_wheel(wheels: Path) -> Path:
    found = sorted(Path(wheels).glob(f"{ARCSUB_PREFIX}*.whl"))
    if not found:
        raise VenvError(f"{wheels}: no arcsub-*.whl; rebuild the bundle")
    return found[-1]


def set_key(wheels: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in wheels:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise VenvError(f"{venv}: no lib/python3*/site-packages")
    return found[0]


def run_checked(command: list, what: str, env=None, *, error: type[ArcsubError] = VenvError):
    """Run ``command``; ``error`` naming ``what`` and the last lines it printed when it fails."""
    done = subprocess.run([str(c) for c in command], check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise error(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done


def base_python() -> str:
    """The interpreter new environments are made from (the one below this venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def install_offline(python: Path, wheels: list[Path], what: str) -> None:
    command = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", *wheels]
    run_checked(command, what, env=offline_pip_env())


def base_venv(wheels: Path, *, cache: Path, fresh: bool = False, echo: Callable[[str], None] = print) -> Path:
    """The base environment of the set in ``wheels`` (every wheel but arcsub's), from the
    cache unless ``fresh`` or missing; returns the environment's folder."""
    parts = third_party_wheels(wheels)
    if not parts:
        raise VenvError(f"{wheels}: no third-party wheels; build the bundle with its wheel set")
    venv = Path(cache) / set_key(parts)
    if (venv / READY_STAMP).is_file() and not fresh:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    echo(f"installing {len(parts)} wheels offline into a fresh environment {venv} (a few minutes)")
    run_checked([base_python(), "-m", "venv", venv], f"python -m venv {venv}")
    install_offline(python_of(venv), parts, f"pip install --no-index --no-deps ({len(parts)} wheels from {wheels})")
    (venv / READY_STAMP).write_text("\n".join(p.name for p in parts) + "\n")
    return venv


def overlay_venv(base: Path, dest: Path) -> Path:
    """A new environment at ``dest`` that sees ``base``'s packages; returns its python."""
    if dest.exists():
        shutil.rmtree(dest)
    run_checked([base_python(), "-m", "venv", "--without-pip", dest], f"python -m venv {dest}")
    (site_packages(dest) / BASE_LINK).write_text(str(site_packages(base)) + "\n")
    return python_of(dest)
