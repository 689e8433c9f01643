"""The package list of Kaggle's image, kept as data (``images/<image>.txt``), reduced to
what can touch the kernel.

Kaggle publishes what its Python image holds (github.com/Kaggle/docker-python, branch
``list_packages``, ``installed_cpu_packages.txt``: ``name==version`` lines). That is the
CPU image's list; the GPU image is built ``FROM`` Colab's GPU runtime with the same
``kaggle_requirements.txt`` (the repository's ``Dockerfile.tmpl``). ``refresh`` reads it
from a file, a URL or a clone (a git directory), keeps

* every listed package the wheel sets also contain (``wheels/requirements-*.txt``),
* every listed package whose own requirements (that version's wheel metadata from the
  package index, markers evaluated for the image's Python, extras not followed) name
  one of ``ENGINES``,
* every listed package the engines import whenever it is present although nothing
  requires it (``OPTIONAL_IMPORTS``: torchao, opencv, ...),
* and what those need from the list (their requirements again), so that they import,

and writes the file: a header (source, commit and date, the rule, the command that
regenerates it), then ``name==version  # why`` lines. ``bundle/replica.py`` installs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import ArcsubError
from ..io import write_text_atomic

IMAGES = ("kaggle",)
KAGGLE_REPOSITORY = "github.com/Kaggle/docker-python"
KAGGLE_BRANCH = "list_packages"
KAGGLE_FILE = "installed_cpu_packages.txt"
DEFAULT_SOURCE = f"https://raw.githubusercontent.com/Kaggle/docker-python/{KAGGLE_BRANCH}/{KAGGLE_FILE}"
IMAGE_PYTHON = "3.12"  # Dockerfile.tmpl: PACKAGE_PATH=/usr/local/lib/python3.12/dist-packages
ENGINES = ("torch", "transformers", "peft", "vllm", "accelerate", "numpy")
# Imported (or version-checked, refusing some versions) by the engines whenever present,
# though no engine requires them. Read in peft 0.21.2 (peft/import_utils.py), transformers
# 5.19.0 (transformers/utils/import_utils.py) and vLLM 0.19.1 (vllm/utils/import_utils.py,
# model_executor/layers/quantization/bitsandbytes.py). Only names a Kaggle list can hold matter.
OPTIONAL_IMPORTS: Mapping[str, str] = {
    "torchao": "peft is_torchao_available (raises ImportError below 0.16), transformers is_torchao_available",
    "bitsandbytes": "peft is_bnb_available, transformers is_bitsandbytes_available, vLLM's bitsandbytes loader",
    "optimum": "peft is_optimum_available, transformers is_optimum_available",
    "diffusers": "peft is_diffusers_available, transformers is_diffusers_available",
    "hqq": "peft is_hqq_available",
    "torchvision": "transformers is_torchvision_available (image processors)",
    "torchaudio": "transformers is_torchaudio_available",
    "torchcodec": "transformers is_torchcodec_available",
    "opencv-python": "transformers is_cv2_available",
    "opencv-python-headless": "transformers is_cv2_available",
    "opencv-contrib-python": "transformers is_cv2_available",
    "protobuf": "transformers is_protobuf_available (sentencepiece tokenizers' conversion)",
    "sentencepiece": "transformers is_sentencepiece_available",
    "tiktoken": "transformers is_tiktoken_available",
    "scipy": "transformers is_scipy_available",
    "scikit-learn": "transformers is_sklearn_available",
    "numba": "transformers is_numba_available",
    "timm": "transformers is_timm_available",
    "datasets": "transformers is_datasets_available (Trainer)",
    "flash-attn": "transformers is_flash_attn_2_available, vLLM find_spec('flash_attn')",
    "kernels": "transformers is_kernels_available",
    "triton": "transformers is_triton_available, vLLM (CUDA kernels)",
    "xformers": "vLLM attention backends",
    "deepspeed": "accelerate and transformers is_deepspeed_available",
}
HTTP_TIMEOUT_S = 60


class ImageListError(ArcsubError):
    """An image list cannot be read, fetched or reduced."""


@dataclass(frozen=True)
class Listed:
    name: str
    version: str
    why: str = ""

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @property
    def public_version(self) -> str:
        """The version without its local label (``2.10.0+cpu`` -> ``2.10.0``)."""
        return self.version.split("+", 1)[0]


@dataclass
class ImageList:
    name: str
    header: dict[str, str] = field(default_factory=dict)
    packages: list[Listed] = field(default_factory=list)

    @property
    def python(self) -> str:
        return self.header.get("python", IMAGE_PYTHON).split()[0]

    def key(self) -> str:
        """A short hash of the packages (what a replica is built from)."""
        text = "".join(f"{p.key}=={p.version}\n" for p in sorted(self.packages, key=lambda p: p.key))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the data file
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s#]+)\s*(?:#\s*(?P<why>.*))?$")
_HEADER = re.compile(r"^#\s*(?P<key>[a-z][a-z -]*):\s*(?P<value>.*)$")


def parse_listing(text: str, origin: str) -> list[Listed]:
    """``name==version`` lines (pip freeze style); comments and blank lines skipped;
    anything else (an editable or URL install) is an error naming the line."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ImageListError(f"{origin}:{number}: expected 'name==version', got {line[:80]!r}; fix the list")
        found.append(Listed(match["name"], match["version"], (match["why"] or "").strip()))
    return found


def read_image_list(path: Path) -> ImageList:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageListError(
            f"{path}: no image list; write it with `arcsub bundle image-list --image {path.stem}`"
        ) from None
    header = {}
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match and match["key"] not in header:
            header[match["key"]] = match["value"].strip()
    packages = parse_listing(text, str(path))
    if not packages:
        raise ImageListError(f"{path}: lists no packages; regenerate it with `arcsub bundle image-list`")
    return ImageList(path.stem, header, packages)


def image_list_path(image: str, root: Path) -> Path:
    if image not in IMAGES:
        raise ImageListError(f"unknown image {image!r}: the replicas know {', '.join(IMAGES)}")
    return Path(root) / "images" / f"{image}.txt"


def format_image_list(image: ImageList) -> str:
    lines = [f"# {key}: {value}" for key, value in image.header.items()]
    width = max((len(f"{p.name}=={p.version}") for p in image.packages), default=0)
    lines += [f"{p.name}=={p.version}".ljust(width) + (f"  # {p.why}" if p.why else "") for p in image.packages]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the published list
@dataclass(frozen=True)
class Source:
    text: str
    description: dict[str, str]  # header lines: where it came from


def read_source(where: str) -> Source:
    """The published list from a git directory (a clone or a bare mirror: branch
    ``list_packages``), a URL, or a file."""
    path = Path(where)
    if path.is_dir():
        return _from_git(path)
    if re.match(r"^https?://", where):
        try:
            with urllib.request.urlopen(where, timeout=HTTP_TIMEOUT_S) as response:
                text = response.read().decode("utf-8")
        except OSError as exc:
            raise ImageListError(f"{where}: {exc}; pass --from a local copy (a file or a clone)") from None
        return Source(text, {"source": where, "fetched": time.strftime("%Y-%m-%d")})
    if not path.is_file():
        raise ImageListError(f"--from {where}: neither a folder, a file nor an http(s) URL; pass one of those")
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Source(text, {"source": f"{path} (sha256 {digest})", "read": time.strftime("%Y-%m-%d")})


def _from_git(folder: Path) -> Source:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ImageListError(
                f"{folder}: git {' '.join(args)} failed ({done.stderr.strip()[:120]}); pass a clone of "
                f"{KAGGLE_REPOSITORY} that has its {KAGGLE_BRANCH} branch"
            )
        return done.stdout

    text = git("show", f"{KAGGLE_BRANCH}:{KAGGLE_FILE}")
    commit, date, subject = git("log", "-1", "--format=%H%n%cI%n%s", KAGGLE_BRANCH).splitlines()[:3]
    return Source(
        text,
        {
            "source": f"{KAGGLE_REPOSITORY}, branch {KAGGLE_BRANCH}, file {KAGGLE_FILE} (a clone)",
            "commit": f"{commit} of {date} ({subject})",
        },
    )


# ---------------------------------------------------------------- requirements from the index
Requires = Callable[[Listed], "list[str] | None"]  # a listed package's Requires-Dist (None: unknown)


def index_requires(
    packages: Iterable[Listed], *, echo: Callable[[str], None] = print, python: str = IMAGE_PYTHON
) -> dict[str, list[str] | None]:
    """Each listed package's ``Requires-Dist`` from one of that version's wheels on the
    index (its public version when the list carries a local label such as ``+cpu``),
    cached in the wheel-metadata cache; ``None`` where the index has no wheel of it."""
    from .wheelset import metadata_cache

    packages = list(packages)
    cache = metadata_cache()
    cache.mkdir(parents=True, exist_ok=True)
    echo(f"reading the requirements of {len(packages)} packages from the package index (cached in {cache})")
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda p: _metadata_text(p, cache, python), packages))
    return {
        p.key: None if text is None else list(HeaderParser().parsestr(text).get_all("Requires-Dist") or [])
        for p, text in zip(packages, texts, strict=True)
    }


def wheel_for(files: Mapping[str, dict], package: Listed, python: str) -> str | None:
    """The file name of a wheel of ``package``'s (public) version, preferring one built
    for CPython ``python`` on x86-64 Linux; None when the index has no wheel of it."""
    wanted = Version(package.public_version)
    abi = "cp" + python.replace(".", "")
    ranked = []
    for filename in files:
        try:
            _name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if version != wanted:
            continue
        fits_platform = any(t.platform == "any" or "x86_64" in t.platform and "linux" in t.platform for t in tags)
        fits_python = any(t.interpreter in (abi, "py3", "py2.py3") or t.abi in (abi, "abi3", "none") for t in tags)
        ranked.append((not fits_platform, not fits_python, filename))
    return min(ranked)[2] if ranked else None


def _metadata_text(package: Listed, cache: Path, python: str) -> str | None:
    from .wheelset import core_metadata, index_files

    try:
        files = index_files(package.name)
    except ArcsubError:
        return None  # not on the index at all: the caller says so
    filename = wheel_for(files, package, python)
    if filename is None:
        return None
    cached = cache / f"{filename}.metadata"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    text = core_metadata(files[filename], int(files[filename].get("size") or 0))
    if text is not None:
        write_text_atomic(cached, text)
    return text


# ---------------------------------------------------------------- the reduction
def _environment(python: str) -> dict[str, str]:
    from .wheelset import get_target

    return dataclasses.replace(get_target("kaggle"), python_version=python).marker_environment()


def base_requirements(texts: Iterable[str], python: str) -> list[Requirement]:
    """The requirements that apply without extras, markers evaluated for ``python``."""
    environment = _environment(python)
    found = []
    for text in texts:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
            found.append(requirement)
    return found


@dataclass
class Reduction:
    kept: list[Listed]  # in list order, each with why
    numpy_only: list[Listed]  # left out: they require numpy and no other engine, and no engine imports them
    unknown: list[Listed]  # no wheel on the index: requirements unknown, not installable in a replica


def reduce_listing(
    listed: list[Listed],
    in_sets: Mapping[str, str],
    requires: Mapping[str, list[str] | None],
    *,
    python: str = IMAGE_PYTHON,
    optional: Mapping[str, str] = OPTIONAL_IMPORTS,
) -> Reduction:
    """Apply the rule (module docstring). ``in_sets``: canonical name -> which wheel sets
    hold it; ``requires``: canonical name -> Requires-Dist, None when unknown.

    Packages whose only engine requirement is numpy (tensorflow, jax, pandas, ... two
    thirds of the image with what they need) are left out unless a kept package needs
    them: no engine imports them, so they cannot touch the kernel; on Kaggle they can
    only add ``pip check`` lines about the set's numpy."""
    by_key = {p.key: p for p in listed}
    why: dict[str, str] = {}
    engines = {canonicalize_name(e) for e in ENGINES}
    optional_why = {canonicalize_name(k): v for k, v in optional.items()}
    for package in listed:
        names = {canonicalize_name(r.name) for r in base_requirements(requires.get(package.key) or [], python)}
        named = [e for e in ENGINES if canonicalize_name(e) in names - {package.key}]
        if package.key == "pip":
            why[package.key] = "the installer kernel/main.py runs (python -m pip)"
        elif package.key in in_sets:
            why[package.key] = f"in the {in_sets[package.key]}"
        elif package.key in engines:
            why[package.key] = "an engine"
        elif package.key in optional_why:
            why[package.key] = f"imported when present: {optional_why[package.key]}"
        elif set(named) - {"numpy"}:
            why[package.key] = "requires " + ", ".join(named)
    todo = list(why)
    while todo:  # what the kept packages need from the list, so that they import
        owner = todo.pop()
        for requirement in base_requirements(requires.get(owner) or [], python):
            key = canonicalize_name(requirement.name)
            if key in by_key and key not in why:
                why[key] = f"needed by {by_key[owner].name}"
                todo.append(key)
    numpy_only = [
        p for p in listed
        if p.key not in why
        and "numpy" in {canonicalize_name(r.name) for r in base_requirements(requires.get(p.key) or [], python)}
    ]  # fmt: skip
    return Reduction(
        kept=[Listed(p.name, p.version, why[p.key]) for p in listed if p.key in why],
        numpy_only=numpy_only,
        unknown=[p for p in listed if requires.get(p.key) is None],
    )


def set_names(root: Path) -> dict[str, str]:
    """Canonical name -> which wheel sets hold it ("wheel sets (kaggle 2.2.6, cpu 2.3.5)")."""
    from .wheelset import TARGETS, parse_requirements, requirements_path

    found: dict[str, list[str]] = {}
    for target in TARGETS.values():
        path = requirements_path(target, root)
        if not path.is_file():
            continue
        for pin in parse_requirements(path):
            found.setdefault(canonicalize_name(pin.name), []).append(f"{target.name} {pin.version}")
    return {name: "wheel sets (" + ", ".join(sets) + ")" for name, sets in found.items()}


def refresh(
    image: str, source: str, root: Path, *, requires: Requires | None = None, echo: Callable[[str], None] = print
) -> tuple[Path, ImageList]:
    """Read the published list, reduce it and write ``images/<image>.txt``."""
    path = image_list_path(image, root)
    published = read_source(source)
    listed = parse_listing(published.text, published.description["source"])
    if not listed:
        raise ImageListError(f"{source}: no 'name==version' lines; pass the image's package list")
    table = {p.key: requires(p) for p in listed} if requires else index_requires(listed, echo=echo)
    reduction = reduce_listing(listed, set_names(root), table)
    kept = reduction.kept
    header = {
        "image": f"{image}: Kaggle's Python image (CPython {IMAGE_PYTHON}); the published list is the CPU image's, "
        "the GPU image is built FROM Colab's GPU runtime with the same kaggle_requirements.txt (Dockerfile.tmpl)",
        "python": f"{IMAGE_PYTHON} (Dockerfile.tmpl: PACKAGE_PATH /usr/local/lib/python3.12/dist-packages)",
        **published.description,
        "rule": "keep pip and every listed package that is in a wheel set (wheels/requirements-*.txt), is an engine, is imported "
        "by the engines when present, or requires (its own Requires-Dist, no extras) "
        + ", ".join(e for e in ENGINES if e != "numpy")
        + "; then what those need from the list",
        "kept": f"{len(kept)} of {len(listed)} listed",
        "left out": f"{len(reduction.numpy_only)} that require numpy and no other engine and that no engine imports "
        f"({', '.join(p.name for p in reduction.numpy_only[:6])}, ...): they cannot touch the kernel",
        "unknown": f"{len(reduction.unknown)} with no wheel on the index (requirements unknown): "
        + ", ".join(p.name for p in reduction.unknown),
        "regenerate": f"arcsub bundle image-list --image {image} (or --from a file, a URL, a clone of {KAGGLE_REPOSITORY})",
        "written": time.strftime("%Y-%m-%d"),
    }
    result = ImageList(image, header, kept)
    write_text_atomic(path, format_image_list(result))
    echo(f"{path}: {len(kept)} of {len(listed)} listed packages kept")
    return path, result
