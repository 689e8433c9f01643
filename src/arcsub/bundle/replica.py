"""A replica of Kaggle's Python environment: a virtual environment per target holding
the image's packages that can touch the kernel (``images/<image>.txt``, see
``image_list.py``) at the image's versions, from the package index.

Built once per list and Python (``<cache>/image-replicas/<image>-<target>-<key>/``, a
ready stamp with what it holds), never changed afterwards: a check works on a copy
(``copy_replica``). How it is built:

1. ``python -m venv`` with the target's CPython (3.12 for ``kaggle``: ``$ARCSUB_PYTHON312``
   or ``~/.pyenv/versions/3.12*``; 3.11 for ``cpu``: the one below this venv), then the
   image's pip version;
2. every listed package ``==version`` with ``--no-deps --only-binary=:all:`` from the
   index, with this machine's pip configuration off (its find-links and constraints are
   not Kaggle's). A version with a local label that the index does not have
   (``torch==2.10.0+cpu``) becomes the index's build of the same version; what that build
   requires and the list lacks (torch's CUDA libraries, triton) comes along at the
   versions the kaggle wheel set pins (pip's resolution of that same torch). Packages with
   no wheel for this Python at the listed version are left out. All of it is recorded.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import ArcsubError
from ..io import exclusive_lock, folder_bytes, write_json_atomic
from .image_list import ImageList, Listed, base_requirements
from .venv import run_checked

REPLICAS = "image-replicas"
STAMP = ".arcsub-replica.json"
BUILDER_VERSION = 1  # bump when the way a replica is built changes: old ones are rebuilt


class ReplicaError(ArcsubError):
    """A replica of the image cannot be built or used."""


def index_pip_env(env=None) -> dict[str, str]:
    """pip with the package index and nothing of this machine's configuration."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _version_of(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_python(version: str, env=os.environ) -> Path:
    """A CPython ``version`` interpreter: this venv's base when it is that version, else
    ``$ARCSUB_PYTHON<XY>``, else ``~/.pyenv/versions/<version>*``, else ``python<version>``
    on PATH (each one is run to be sure: a pyenv shim without a version fails)."""
    from .venv import base_python

    variable = "ARCSUB_PYTHON" + version.replace(".", "")
    if env.get(variable):
        if _version_of(env[variable]) != version:
            raise ReplicaError(f"${variable}={env[variable]} is not a working CPython {version}; point it at one")
        return Path(env[variable])
    candidates = [base_python()]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        if _version_of(candidate) == version:
            return Path(candidate)
    raise ReplicaError(
        f"no CPython {version} found (the image's Python for this target): install one and set ${variable} "
        f"to its interpreter (e.g. pyenv install {version})"
    )


@dataclass
class ReplicaPlan:
    """What the replica will hold, and where it differs from the list."""

    python: str  # "3.12"
    pip: str | None
    install: list[Listed] = field(default_factory=list)  # name==version to install (why: the list's reason)
    substituted: dict[str, dict] = field(default_factory=dict)  # name -> {listed, installed, why}
    added: dict[str, dict] = field(default_factory=dict)  # name -> {version, why}
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it is not in the replica

    def as_record(self) -> dict:
        return {
            "python": self.python,
            "pip": self.pip,
            "packages": {p.name: p.version for p in self.install},
            "substituted": self.substituted,
            "added": self.added,
            "skipped": self.skipped,
        }


def _installable(files: dict, version: str, tags) -> bool:
    """Whether the index has a wheel of ``version`` that one of ``tags`` accepts."""
    for filename in files:
        try:
            _name, found, _build, file_tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if found == Version(version) and set(file_tags) & tags:
            return True
    return False


def plan_replica(image: ImageList, python: str, root: Path, *, echo: Callable[[str], None] = print) -> ReplicaPlan:
    """Which wheels the replica takes from the index (needs the index; metadata cached)."""
    from concurrent.futures import ThreadPoolExecutor

    from .image_list import ImageListError, index_requires
    from .wheelset import WheelSetError, get_target, index_files, parse_requirements, requirements_path

    target = dataclasses.replace(get_target("kaggle"), python_version=python, abi="cp" + python.replace(".", ""))
    tags = target.supported_tags()
    kaggle_set = parse_requirements(requirements_path(get_target("kaggle"), root))
    pins = {canonicalize_name(p.name): p.version for p in kaggle_set}
    plan = ReplicaPlan(python=python, pip=next((p.version for p in image.packages if p.key == "pip"), None))
    echo(f"checking which of the {len(image.packages)} listed packages have wheels for CPython {python} on the index")

    def files_of(package: Listed) -> dict:
        try:
            return index_files(package.name)
        except WheelSetError:
            return {}

    with ThreadPoolExecutor(max_workers=8) as pool:
        listings = dict(zip([p.key for p in image.packages], pool.map(files_of, image.packages), strict=True))
    builds: list[Listed] = []  # packages installed as a build other than the listed one
    for package in image.packages:
        if package.key == "pip":
            continue  # installed first, on its own
        files = listings[package.key]
        if _installable(files, package.version, tags):
            plan.install.append(package)
        elif package.public_version != package.version and _installable(files, package.public_version, tags):
            installed = Listed(package.name, package.public_version, package.why)
            plan.install.append(installed)
            builds.append(installed)
            plan.substituted[package.name] = {
                "listed": package.version,
                "installed": package.public_version,
                "why": f"the index has no {package.version}; its {package.public_version} is taken (for torch and "
                "its kin the index's build is the CUDA 12.8 one: a CUDA build as in the GPU image, where the "
                "published list, the CPU image's, names the CPU build)",
            }
        else:
            plan.skipped[package.name] = f"no wheel of {package.version} for CPython {python} on the index"
    listed = {p.key for p in image.packages}
    todo = list(builds)
    while todo:  # what a substituted build needs that the list lacks
        requires = index_requires(todo, echo=echo, python=python)
        following = []
        for owner in todo:
            for requirement in base_requirements(requires.get(owner.key) or [], python):
                key = canonicalize_name(requirement.name)
                if key in listed or key in {canonicalize_name(n) for n in plan.added}:
                    continue
                if key not in pins:
                    raise ImageListError(
                        f"{owner.name} {owner.version} needs {requirement}, which neither the image list nor the "
                        "kaggle wheel set holds; add it to images/ or re-lock the kaggle set"
                    )
                plan.added[requirement.name] = {
                    "version": pins[key],
                    "why": f"required by {owner.name} {owner.version} (the index's build); version of the kaggle set",
                }
                added = Listed(requirement.name, pins[key], f"required by {owner.name}")
                plan.install.append(added)
                following.append(added)
        todo = following
    return plan


def replica_dir(image: ImageList, target_name: str, python: str) -> Path:
    from ..models import cache_root

    return cache_root() / REPLICAS / f"{image.name}-{target_name}-py{python}-{image.key()}-b{BUILDER_VERSION}"


def read_stamp(replica: Path) -> dict | None:
    try:
        return json.loads((Path(replica) / STAMP).read_text())
    except (OSError, ValueError):
        return None


def ensure_replica(
    image: ImageList, target_name: str, python_version: str, root: Path, *, echo: Callable[[str], None] = print
) -> tuple[Path, dict]:
    """The cached replica for ``target_name`` (built when missing); its folder and record."""
    folder = replica_dir(image, target_name, python_version)
    with exclusive_lock(str(folder) + ".lock"):
        record = read_stamp(folder)
        if record is not None:
            return folder, record
        python = find_python(python_version)
        if folder.exists():
            shutil.rmtree(folder)
        return folder, build_replica(image, folder, python, python_version, root, echo=echo)


def build_replica(
    image: ImageList, folder: Path, python: Path, version: str, root: Path, *, echo: Callable[[str], None]
) -> dict:
    started = time.monotonic()
    plan = plan_replica(image, version, root, echo=echo)
    echo(f"building the {image.name} replica for CPython {version} in {folder} ({len(plan.install)} packages "
         "from the index; several minutes, once)")  # fmt: skip
    for name, what in plan.substituted.items():
        echo(f"  {name}: the image's {what['listed']} is not on the index; the replica holds {what['installed']}")
    if plan.skipped:
        echo(f"  left out ({len(plan.skipped)}, no wheel for CPython {version}): {', '.join(plan.skipped)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "venv", folder], f"python -m venv {folder}")
    replica_python = python_of(folder)
    env = index_pip_env()
    if plan.pip:
        _run([replica_python, "-m", "pip", "install", "--quiet", f"pip=={plan.pip}"], f"pip install pip=={plan.pip}",
             env=env)  # fmt: skip
    requirements = folder / "replica-requirements.txt"
    requirements.write_text("".join(f"{p.name}=={p.version}\n" for p in plan.install))
    command = [replica_python, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "-r", requirements]
    _pip_with_bar(command, len(plan.install), env)
    record = {
        "image": image.name,
        "list": {k: v for k, v in image.header.items() if k in ("source", "commit", "written")},
        "list_key": image.key(),
        "python_full": _run([replica_python, "-c", "import sys; print(sys.version.split()[0])"], "py").stdout.strip(),
        **plan.as_record(),
        "build_s": round(time.monotonic() - started, 1),
        "bytes": folder_bytes(folder),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(folder / STAMP, record, indent=1)
    echo(f"replica ready: {len(plan.install)} packages, {record['bytes'] / 1e9:.2f} GB, {record['build_s']:.0f} s")
    return record


def _pip_with_bar(command: list, total: int, env: dict) -> None:
    from ..console import progress_bar, say

    errors_path = Path(str(command[-1]) + ".stderr")
    with open(errors_path, "w+") as errors:
        process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        with progress_bar(total=total, desc="replica wheels", unit="wheel") as bar:
            for line in process.stdout:
                if line.startswith("Collecting "):
                    bar.update(1)
                elif line.startswith("Installing collected packages"):
                    say(f"  installing {total} packages (unpacking, a few minutes)")
        returncode = process.wait()
        errors.seek(0)
        lines = [ln for ln in errors.read().splitlines() if ln.startswith("ERROR")]
    if returncode != 0:
        raise ReplicaError(f"pip could not build the replica (exit {returncode}): {' | '.join(lines[-3:])}")


def python_of(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def _run(command: list, what: str, env=None) -> subprocess.CompletedProcess:
    return run_checked(command, what, env, error=ReplicaError)


def copy_replica(replica: Path, dest: Path) -> Path:
    """A working copy of ``replica`` at ``dest`` (the cache stays as built); its python."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # cp keeps the interpreter symlinks and is several times faster than copytree here
    done = subprocess.run(["cp", "-a", str(replica), str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReplicaError(f"copying the replica to {dest} failed: {done.stderr.strip()[-200:]}")
    (dest / STAMP).unlink(missing_ok=True)  # a copy is no cached replica
    return python_of(dest)
