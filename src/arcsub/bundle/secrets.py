"""Refuse to upload credentials.

The upload folders become Kaggle datasets and a kernel; whatever they hold is readable by
whoever can see them (and public ones by everyone). A key copied in by accident (a
kaggle.json beside the model, a .env in the repository the wheel was built from) would
leak, so the bundle is scanned before it is pushed: files by name, text files by content,
and wheels by member name (and arcsub's own wheel by content).

Findings name the file and the kind of credential, never the secret itself.
"""

from __future__ import annotations

import fnmatch
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import ArcsubError

MAX_SCAN_BYTES = 8 * 1024 * 1024  # larger files are weights or archives, not configs

# File names that hold credentials whatever their content.
REFUSED_NAMES = {
    "kaggle.json": "a Kaggle API key file (kaggle.json)",
    # kagglesdk.kaggle_env.get_access_token_from_env reads ~/.kaggle/access_token and
    # access_token.txt; KaggleCredentials keeps OAuth tokens in ~/.kaggle/credentials.json.
    "access_token": "a Kaggle access token file",
    "access_token.txt": "a Kaggle access token file",
    "credentials.json": "a Kaggle OAuth credentials file",
    ".env": "an environment file (.env)",
    ".netrc": "a .netrc login file",
    ".git-credentials": "a git credentials file",
    ".pypirc": "a PyPI credentials file",
    "id_rsa": "an SSH private key",
    "id_dsa": "an SSH private key",
    "id_ecdsa": "an SSH private key",
    "id_ed25519": "an SSH private key",
}
REFUSED_PATTERNS = {
    "*.env": "an environment file (*.env)",
    ".env.*": "an environment file (.env.*)",
    "*.token": "a token file (*.token)",
}
# *.pem files are refused by content (a PRIVATE KEY block below), not by name: certificate
# bundles such as certifi's cacert.pem are public and ship in ordinary wheels.

# Credential-like strings in text. The patterns are written so that this module's own
# source (which ships in arcsub's wheel, whose contents are scanned) does not match them.
CONTENT_PATTERNS = [
    # kaggle.json's content under another name: a 32-hex "key" with a "username" close by
    # (a lone "key": <md5> is a cache entry or a checksum, not a credential).
    (
        re.compile(
            r'"username"\s*:[^{}]{0,300}"key"\s*:\s*"[0-9a-f]{32}"|"key"\s*:\s*"[0-9a-f]{32}"[^{}]{0,300}"username"\s*:'
        ),
        "a Kaggle API key (kaggle.json content)",
    ),
    # KAGGLE_KEY=..., KAGGLE_KEY: ..., os.environ["KAGGLE_KEY"] = "..." (not a $VARIABLE or a lookup).
    (
        re.compile(r"\bKAGGLE_(?:KEY|API_TOKEN)['\"]?\]?\s*[=:]\s*['\"]?[A-Za-z0-9_\-]{8,}"),
        "a Kaggle credential assigned to KAGGLE_KEY / KAGGLE_API_TOKEN",
    ),
    # kagglesdk's KaggleCredentials file (~/.kaggle/credentials.json): an OAuth refresh token.
    (re.compile(r'"refresh_token"\s*:\s*"[^"\s]{16,}"'), "an OAuth refresh token (Kaggle credentials.json)"),
    # Kaggle's access tokens (the "KGAT" tokens that kagglesdk's account service names).
    (re.compile(r"\bKGAT_[A-Za-z0-9]{16,}"), "a Kaggle access token (KGAT_...)"),
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}"), "a Hugging Face token (hf_...)"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token (ghp_...)"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"), "a GitHub fine-grained token (github_pat_...)"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id (AKIA...)"),
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), "a private key (PEM block)"),
]

OWN_DISTRIBUTION = "arcsub"


# ---------------------------------------------------------------- single checks
def refused_name(name: str) -> str | None:
    """Why a file of this (base) name is refused, or None."""
    base = name.rsplit("/", 1)[-1].lower()  # Kaggle.json on a case-insensitive disk is still read
    if base in REFUSED_NAMES:
        return REFUSED_NAMES[base]
    for pattern, why in REFUSED_PATTERNS.items():
        if fnmatch.fnmatchcase(base, pattern):
            return why
    return None


def scan_text(data: bytes) -> list[str]:
    """'line N: what' for each credential-like string in UTF-8 text; nothing for binary data."""
    if len(data) > MAX_SCAN_BYTES or b"\0" in data:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []  # not text: weights, archives, images
    found = []
    for pattern, why in CONTENT_PATTERNS:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((line, why))
    return [f"line {line}: {why}" for line, why in sorted(set(found))]


def _wheel_distribution(name: str) -> str:
    """The normalized project name of a wheel file name (PEP 427: name-version-...)."""
    return re.sub(r"[-_.]+", "-", name.split("-", 1)[0]).lower()


def scan_archive(path: Path, shown: str) -> list[str]:
    """A wheel or zip: member names always; member contents only in arcsub's own wheel.

    Third-party wheels are not content-scanned: packages such as cryptography, paramiko or
    pyOpenSSL ship test keys and sample tokens, which would be false positives, and their
    contents come from the package index, not from this machine."""
    try:
        with zipfile.ZipFile(path) as archive:
            own = path.suffix.lower() == ".whl" and _wheel_distribution(path.name) == OWN_DISTRIBUTION
            findings = []
            for info in archive.infolist():
                if info.is_dir():
                    continue
                why = refused_name(info.filename)
                if why:
                    findings.append(f"{shown}!{info.filename}: {why}")
                elif own and info.file_size <= MAX_SCAN_BYTES:
                    findings += [f"{shown}!{info.filename}: {f}" for f in scan_text(archive.read(info))]
            return findings
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"{shown}: cannot be read as a zip ({exc}), so it cannot be checked for credentials"]


def scan_file(path: Path, shown: str) -> list[str]:
    why = refused_name(path.name)
    if why:
        return [f"{shown}: {why}"]
    if path.suffix.lower() in (".whl", ".zip"):
        return scan_archive(path, shown)
    try:
        if path.stat().st_size > MAX_SCAN_BYTES:
            return []
        data = path.read_bytes()
    except OSError:
        return []  # unreadable here means unreadable to the upload too
    return [f"{shown}: {f}" for f in scan_text(data)]


# ---------------------------------------------------------------- folders
def _walk(folder: Path):
    """Every file under folder, following symlinks (the bundle links big files in), each
    real directory once so that a link back up cannot loop."""
    seen = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():  # skips broken links
                yield path


def find_secrets(folder: Path) -> list[str]:
    """'path: why' for every credential file or credential-like string under folder."""
    folder = Path(folder)
    if folder.is_file():
        return scan_file(folder, str(folder))
    findings = []
    for path in _walk(folder):
        findings += scan_file(path, str(path))
    return findings


class SecretsError(ArcsubError):
    """An upload folder holds credentials."""


def refuse_secrets(folders: Iterable[Path]) -> None:
    """Raise listing every finding in the folders, one per line."""
    findings = [f for folder in folders for f in find_secrets(Path(folder))]
    if findings:
        head = (
            f"the bundle refuses to carry credentials ({len(findings)} found); they belong in ~/.kaggle "
            "or the environment, not in the upload folders: remove them and rebuild"
        )
        raise SecretsError("\n".join([head] + [f"  {f}" for f in findings]))
