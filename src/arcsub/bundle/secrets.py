"""Refuse to upload credentials.

The upload folders become Kaggle datasets and a kernel; whatever they hold is readable by
whoever can see them (and public ones by everyone). A key copied in by accident (a
kaggle.json beside the model, a .env in the repository the wheel was built from) would
leak, so the bundle is scanned before it is pushed: files by name, every file by content
whatever its size (text, binary, weights), and wheels by member name (arcsub's own wheel
also by content; so is any other zip).

Contents are streamed in chunks of ``CHUNK_BYTES`` (memory stays constant) through byte-level
regular expressions; consecutive chunks overlap by ``OVERLAP_BYTES``, longer than any match
a pattern can make, so a token across a chunk boundary is still found whole. A finding in
a UTF-8 text file gives its line, in any other file its byte offset.

Findings name the file and the kind of credential, never the secret itself.
"""

from __future__ import annotations

import codecs
import fnmatch
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import ArcsubError

CHUNK_BYTES = 16 << 20
OVERLAP_BYTES = 4096  # > the longest match of any pattern below (every repeat is bounded)

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


def _word(start: bytes, rest: bytes) -> bytes:
    """A pattern for a word that begins with the literal ``start``: ``\\bSTART`` written as
    START then a look-behind, so that ``re`` still finds candidates by the literal (about 15
    times faster over weights than a pattern that begins with ``\\b``)."""
    return start + rb"(?<!\w" + start + rb")" + rest


# Credential-like strings, as bytes (text or binary alike). The patterns are written so
# that this module's own source (which ships in arcsub's wheel, whose contents are scanned)
# does not match them; every repeat is bounded, so a match is never longer than the overlap.
CONTENT_PATTERNS = [
    # kaggle.json's content under another name: a 32-hex "key" with a "username" close by
    # (a lone "key": <md5> is a cache entry or a checksum, not a credential).
    (
        re.compile(
            rb'"username"\s{0,64}:[^{}]{0,300}"key"\s{0,64}:\s{0,64}"[0-9a-f]{32}"'
            rb'|"key"\s{0,64}:\s{0,64}"[0-9a-f]{32}"[^{}]{0,300}"username"\s{0,64}:'
        ),
        "a Kaggle API key (kaggle.json content)",
    ),
    # KAGGLE_KEY=..., KAGGLE_KEY: ..., os.environ["KAGGLE_KEY"] = "..." (not a $VARIABLE or a lookup).
    (
        re.compile(_word(rb"KAGGLE_", rb"(?:KEY|API_TOKEN)['\"]?\]?\s{0,64}[=:]\s{0,64}['\"]?[A-Za-z0-9_\-]{8,256}")),
        "a Kaggle credential assigned to KAGGLE_KEY / KAGGLE_API_TOKEN",
    ),
    # kagglesdk's KaggleCredentials file (~/.kaggle/credentials.json): an OAuth refresh token.
    (
        re.compile(rb'"refresh_token"\s{0,64}:\s{0,64}"[^"\s]{16,256}"'),
        "an OAuth refresh token (Kaggle credentials.json)",
    ),
    # Kaggle's access tokens (the "KGAT" tokens that kagglesdk's account service names).
    (re.compile(_word(rb"KGAT_", rb"[A-Za-z0-9]{16,256}")), "a Kaggle access token (KGAT_...)"),
    (re.compile(_word(rb"hf_", rb"[A-Za-z0-9]{30,256}")), "a Hugging Face token (hf_...)"),
    (re.compile(_word(rb"gh", rb"[pousr]_[A-Za-z0-9]{30,256}")), "a GitHub token (ghp_...)"),
    (re.compile(_word(rb"github_pat_", rb"[A-Za-z0-9_]{22,256}")), "a GitHub fine-grained token (github_pat_...)"),
    (re.compile(_word(rb"AKIA", rb"[0-9A-Z]{16}\b")), "an AWS access key id (AKIA...)"),
    (
        re.compile(rb"-----BEGIN (?:[A-Z0-9]{1,32} ){0,8}PRIVATE KEY(?: BLOCK)?-----"),
        "a private key (PEM block)",
    ),
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


class _TextCheck:
    """Whether a stream fed chunk by chunk is UTF-8 text without NUL bytes (what has line numbers)."""

    def __init__(self) -> None:
        self.text = True
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        if not self.text:
            return
        if b"\0" in chunk:
            self.text = False
            return
        try:
            self._decoder.decode(chunk, final=not chunk)  # an empty chunk: the end of the stream
        except UnicodeDecodeError:
            self.text = False


def _matches(buffer: bytes, pos: int, limit: int) -> Iterator[tuple[int, str]]:
    """(start, what) of every pattern's match in ``buffer`` that starts in [pos, limit)."""
    for pattern, why in CONTENT_PATTERNS:
        for match in pattern.finditer(buffer, pos):
            if match.start() >= limit:
                break
            yield match.start(), why


def scan_stream(stream: BinaryIO) -> list[str]:
    """'line N: what' (UTF-8 text) or 'byte N: what' (anything else) for each
    credential-like string in ``stream``, read in chunks of ``CHUNK_BYTES``.

    Each pass scans the match starts in [pos, limit); the last ``OVERLAP_BYTES`` of the
    buffer are scanned again with the next chunk, where a match that starts there has its
    whole length and one byte after it. One byte before ``pos`` is kept too: the patterns'
    look-behinds read it."""
    found: dict[tuple[int, str], int] = {}  # (byte offset, what) -> line
    check = _TextCheck()
    buffer, base, lines, pos = b"", 0, 0, 0  # base: the offset of buffer[0]; lines: newlines before it
    while True:
        chunk = stream.read(CHUNK_BYTES)
        check.feed(chunk)
        buffer += chunk
        limit = len(buffer) - OVERLAP_BYTES if chunk else len(buffer)
        for start, why in _matches(buffer, pos, limit):
            found.setdefault((base + start, why), lines + buffer.count(b"\n", 0, start) + 1)
        if not chunk:
            break
        if limit > pos:
            drop = limit - 1
            lines += buffer.count(b"\n", 0, drop)
            base, buffer, pos = base + drop, buffer[drop:], 1
    if check.text:
        return [f"line {line}: {why}" for line, why in sorted({(line, why) for (_, why), line in found.items()})]
    return [f"byte {offset}: {why}" for offset, why in sorted(found)]


def _wheel_distribution(name: str) -> str:
    """The normalized project name of a wheel file name (PEP 427: name-version-...)."""
    return re.sub(r"[-_.]+", "-", name.split("-", 1)[0]).lower()


def scan_archive(path: Path, shown: str) -> list[str]:
    """A wheel or zip: member names always; member contents in arcsub's own wheel and in
    any zip that is not a wheel.

    Third-party wheels are not content-scanned: packages such as cryptography, paramiko or
    pyOpenSSL ship test keys and sample tokens, which would be false positives, and their
    contents come from the package index, not from this machine."""
    wheel = path.suffix.lower() == ".whl"
    read_members = not wheel or _wheel_distribution(path.name) == OWN_DISTRIBUTION
    try:
        with zipfile.ZipFile(path) as archive:
            findings = []
            for info in archive.infolist():
                if info.is_dir():
                    continue
                why = refused_name(info.filename)
                if why:
                    findings.append(f"{shown}!{info.filename}: {why}")
                elif read_members:
                    with archive.open(info) as member:
                        findings += [f"{shown}!{info.filename}: {f}" for f in scan_stream(member)]
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
        with open(path, "rb") as stream:
            return [f"{shown}: {f}" for f in scan_stream(stream)]
    except OSError:
        return []  # unreadable here means unreadable to the upload too


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
