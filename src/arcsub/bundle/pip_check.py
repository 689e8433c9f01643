"""``pip check`` over the image, line by line: harmless or not, and why.

After the kernel installs the wheel set over Kaggle's image, the image's own packages
may declare requirements the set no longer meets (an image package pinning the older
transformers, say). Such a line matters only when the kernel's stack loads that package.
Each line is one ``Conflict``; ``classify`` judges it by these rules, in order:

1. the required package is left out of the set on purpose (the target's ``dropped``,
   and the install plan removes the image's copy): harmless, for that reason;
2. a known conflict (``KNOWN``, each with its evidence): harmless or not as recorded;
   where the record names a module, the check imports it in the replica with the
   installed versions, and a failing import makes the line not harmless after all;
3. the package whose requirement breaks is in the wheel set, is an engine, is imported
   by the engines when present, or was loaded by the check's probes: not harmless (an
   unexplained break in what the kernel runs);
4. otherwise the package is one the kernel's stack never loads: harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.utils import canonicalize_name

_HAS = re.compile(
    r"^(?P<owner>\S+) (?P<version>\S+) has requirement (?P<requirement>.+?), but you have (?P<name>\S+) (?P<have>\S+?)\.?$"
)
_MISSING = re.compile(r"^(?P<owner>\S+) (?P<version>\S+) requires (?P<name>[^,\s]+), which is not installed\.?$")
_PLATFORM = re.compile(r"^(?P<owner>\S+) (?P<version>\S+) is not supported on this platform\.?$")
CLEAN = "No broken requirements found."


@dataclass(frozen=True)
class Known:
    harmless: bool
    why: str
    module: str | None = None  # imported in the replica to confirm the line is harmless


_NEVER_IN_KERNEL = (
    "transformers and peft only look for it (find_spec); arcsub's LoRA, training step and vLLM loading never "
    "loaded it in the replica"
)
# (package whose requirement breaks, the package it requires) -> what is known. Canonical
# names. Found by `arcsub bundle check --over-image kaggle` on 2026-12-03 (docs/kaggle-image.md).
KNOWN: Mapping[tuple[str, str], Known] = {
    ("datasets", "huggingface-hub"): Known(
        True, "datasets 4.8.5 caps huggingface-hub below 2.0 but imports with the set's 2.4.0; arcsub uses datasets "
        "only for offline pre-training (finetune/cache.py), never in the kernel; " + _NEVER_IN_KERNEL, "datasets"),
    ("datasets", "fsspec"): Known(
        True, "datasets 4.8.5 caps fsspec at 2026.2.0 but imports with the set's 2026.9.0; " + _NEVER_IN_KERNEL,
        "datasets"),
    ("diffusers", "huggingface-hub"): Known(
        True, "diffusers 0.37.1 caps huggingface-hub below 2.0 but imports with the set's 2.4.0; "
        + _NEVER_IN_KERNEL, "diffusers"),
}  # fmt: skip


@dataclass(frozen=True)
class Conflict:
    line: str
    owner: str  # the package whose requirement breaks ("" when the line is unreadable)
    required: str  # the package it requires
    harmless: bool
    why: str
    module: str | None = None  # to import in the replica before the line counts as harmless


def parse_line(line: str) -> tuple[str, str]:
    """(owner, required) of a pip check line; ("", "") when the line is unreadable."""
    for pattern in (_HAS, _MISSING):
        match = pattern.match(line.strip())
        if match:
            return canonicalize_name(match["owner"]), canonicalize_name(match["name"])
    match = _PLATFORM.match(line.strip())
    if match:
        return canonicalize_name(match["owner"]), ""
    return "", ""


def classify(
    lines: Iterable[str],
    *,
    dropped: Mapping[str, str],
    kernel_side: Iterable[str],
    known: Mapping[tuple[str, str], Known] = KNOWN,
) -> list[Conflict]:
    """One Conflict per line of ``pip check`` output (a clean report gives none).
    ``dropped``: the target's packages left out on purpose; ``kernel_side``: the names
    of what the kernel loads or may load (the set, the engines, their optional imports,
    what the probes loaded)."""
    dropped = {canonicalize_name(k): v for k, v in dropped.items()}
    kernel = {canonicalize_name(n) for n in kernel_side}
    known = {(canonicalize_name(a), canonicalize_name(b)): v for (a, b), v in known.items()}
    found = []
    for line in lines:
        line = line.strip()
        if not line or line == CLEAN:
            continue
        owner, required = parse_line(line)
        if not owner:
            found.append(Conflict(line, "", "", False, "a line arcsub cannot read; look at it"))
        elif required in dropped:
            found.append(Conflict(line, owner, required, True, f"{required} is left out of the set on purpose "
                                  f"({dropped[required]}); the install plan removes the image's copy"))  # fmt: skip
        elif (owner, required) in known:
            entry = known[(owner, required)]
            found.append(Conflict(line, owner, required, entry.harmless, entry.why, entry.module))
        elif owner in kernel:
            found.append(Conflict(line, owner, required, False, f"{owner} is on the kernel's side (in the set, an "
                                  "engine, imported by one, or loaded by the probes): an unexplained break"))  # fmt: skip
        else:
            found.append(Conflict(line, owner, required, True, f"{owner} is an image package the kernel's stack "
                                  "never loads (not in the set, not imported by the engines, not loaded by the probes)"))  # fmt: skip
    return found
