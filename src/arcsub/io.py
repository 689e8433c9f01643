"""The ground's file handling: atomic writes (a crash leaves either the old file or the
new one, never half), the one JSON/TOML reader (a missing or malformed file is one
named error), file hashes, a cross-process lock, and the size of a folder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    text = json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))
    return write_text_atomic(path, text + "\n")


def read_json(
    path: str | os.PathLike,
    error: type[Exception],
    *,
    fix: str = "",
    missing: str = "file not found",
    missing_error: type[Exception] | None = None,
) -> Any:
    """A JSON file's content, or one line of ``error`` that names the file and the fix.

    A missing file raises ``missing_error`` (default ``error``) with ``"{path}:
    {missing}"``; a file that cannot be read or parsed raises ``error`` with ``"{path}:
    not valid JSON (reason); {fix}"``. Files are UTF-8. What the content must hold is
    the caller's to check."""
    return _read_data(path, json.loads, "JSON", error, fix, missing, missing_error)


def read_toml(
    path: str | os.PathLike,
    error: type[Exception],
    *,
    fix: str = "",
    missing: str = "file not found",
    missing_error: type[Exception] | None = None,
) -> dict[str, Any]:
    """A TOML file's tables, with the errors of ``read_json`` (``not valid TOML``)."""
    return _read_data(path, tomllib.loads, "TOML", error, fix, missing, missing_error)


def _read_data(path, parse, kind: str, error, fix: str, missing: str, missing_error) -> Any:
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _raise(missing_error or error, f"{path}: {missing}")
    except OSError as exc:  # a folder, no permission
        _raise(error, f"{path}: unreadable ({exc.strerror or exc}){tail}")
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, UnicodeDecodeError
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        _raise(error, f"{path}: not valid {kind} ({reason}){tail}")


def _raise(error: type[Exception], message: str) -> NoReturn:
    raise error(message) from None


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temp folder beside ``target``; when the block ends without
    an error, it takes ``target``'s place (an older ``target`` is moved aside first
    and removed after), so ``target`` is only ever a complete folder. On an error the
    temp folder is removed and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if target.exists():
            # A folder cannot replace a non-empty folder in one rename: move the old
            # one aside, put the new one in, and move the old one back on failure.
            aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, aside / target.name)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(aside / target.name, target)
                shutil.rmtree(aside, ignore_errors=True)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (wheels and weights are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def exclusive_lock(lock_path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) across processes:
    one builds a cache entry while the others wait, then find it built."""
    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the files under ``folder``: apparent sizes, each name once.

    A symlink counts as the link itself (``lstat``), never its target, and a symlinked
    folder is not entered: a target inside ``folder`` is already counted under its own
    name, and one outside it is not on this folder's disk quota (Kaggle's working-disk
    limit and a dataset upload are both about what lies in the folder). Hard links
    count once per name, as an upload copies each. A file that vanishes while it is
    counted (a running kernel's temp files) is skipped; a missing ``folder`` is 0."""
    total = 0
    stack = [os.fspath(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
