"""``arcsub push``: upload the built bundle to Kaggle with the official ``kaggle`` CLI.

The upload folders (written by the bundle builder) are, in push order::

    BUILD/wheels/   a dataset folder: files + dataset-metadata.json (id "owner/slug", title, licenses)
    BUILD/model/    a dataset folder, same layout
    BUILD/kernel/   main.py + kernel-metadata.json (id, code_file, ...)

Each dataset goes through ``kaggle datasets status OWNER/SLUG`` first (one
``GetDatasetStatus`` request): exit 0 means the dataset exists, so a new version is
pushed (``kaggle datasets version -p DIR -m MESSAGE --dir-mode skip``); a "not found"
answer (exit 1, HTTP 404) means it is new (``kaggle datasets create -p DIR --dir-mode
skip``, private); any other failure stops the push. ``datasets status`` is then polled
until Kaggle has processed the upload ("ready"). Then ``kaggle kernels push -p
BUILD/kernel``.

The CLI exits 0 even when the server rejects an upload (it prints "Kernel push error:",
"Dataset creation error:", or lists invalid sources), so every command's output is read:
a known error line, or the absence of the CLI's success line, raises :class:`PushError`.
It is read as it comes, and a command that prints nothing new for ``NO_PROGRESS_S`` (a
stalled upload, a server that never answers) is ended with everything it started.

Before any request the push refuses what Kaggle would accept and then run wrong: ids
that still carry the build's placeholder owner, and a kernel whose ``dataset_sources``
leaves out a dataset the push uploads (the rules live in ``metadata.py``).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArcsubError
from ..io import read_json
from ..signals import note_ended
from .manifest import MANIFEST
from .metadata import (
    DATASET_METADATA,
    KERNEL_METADATA,
    check_upload_folder,
    placeholder_owner,
    unattached_datasets,
)
from .secrets import refuse_secrets

DATASET_FOLDERS = ("wheels", "model")
KERNEL_FOLDER = "kernel"
DEFAULT_MESSAGE = "arcsub push"
COMMAND_TIMEOUT_S = 6 * 3600  # a multi-GB wheels upload on a slow line
# A command that prints nothing new for this long is stopped: uploads redraw their bar as
# bytes go out, and every other command is one request Kaggle answers in seconds.
NO_PROGRESS_S = 300.0
READY_WAIT_S = 1800.0  # Kaggle unpacks a multi-GB dataset before a kernel can attach it
READY_POLL_S = 15.0

# What the CLI prints (kaggle 2.2.5) when the server refused something but it still exits 0.
_ERROR_MARKERS = (
    "Kernel push error",
    "Dataset creation error",
    "Dataset version creation error",
    "are not valid tags",
    "are not valid dataset sources",
    "are not valid competition sources",
    "are not valid kernel sources",
    "are not valid model sources",
    "Upload unsuccessful",
)
_DATASET_OK = re.compile(
    r"(?:Dataset is being created|Dataset version is being created)\. Please check progress at (\S+)"
)
_KERNEL_OK = re.compile(r"Kernel version (?:\d+ )?successfully pushed\.\s+Please check progress at (\S+)")


class PushError(ArcsubError):
    """A push cannot start (missing folder, metadata or credentials) or Kaggle refused part of it."""


@dataclass
class Step:
    """One CLI command of the push, with what it printed."""

    command: list[str]
    returncode: int | None = None
    output: str = ""  # stdout then stderr
    stderr: str = ""


@dataclass
class PushResult:
    datasets: dict[str, str] = field(default_factory=dict)  # "owner/slug" -> "create" | "version"
    dataset_urls: dict[str, str] = field(default_factory=dict)
    kernel_ref: str = ""
    kernel_url: str | None = None
    steps: list[Step] = field(default_factory=list)
    dry_run: bool = False


# ---------------------------------------------------------------- reading the build
def _read_json(path: Path) -> dict:
    data = read_json(path, PushError, missing="missing; build the bundle first (python build_kernel.py)")
    if not isinstance(data, dict):
        raise PushError(f"{path}: expected a JSON object")
    return data


def _upload_folder(folder: Path, metadata_file: str) -> Path:
    """``folder``, when it holds ``metadata_file`` (which of the build's folders is
    which); what the file must hold is ``metadata.check_upload_folder``'s to say."""
    if not folder.is_dir():
        raise PushError(f"{folder}: missing upload folder; build the bundle first (python build_kernel.py)")
    if not (folder / metadata_file).is_file():
        raise PushError(f"{folder / metadata_file}: missing; build the bundle first (python build_kernel.py)")
    return folder


def _refuse_other_targets(build: Path) -> None:
    """A bundle built for this machine (cpu wheels, Python 3.11) cannot run on Kaggle."""
    manifest = build / MANIFEST
    if not manifest.is_file():
        return  # upload folders written by hand: their metadata is all there is to check
    built = _read_json(manifest)
    target = built.get("target")
    if not (built.get("wheels") or {}).get("complete", True):
        raise PushError(
            f"{build}: built with --no-download (arcsub's wheel only); rebuild with the wheel set, then push"
        )
    if target != "kaggle":
        raise PushError(
            f"{build}: built for the {target} target (this machine's wheels), which cannot run on Kaggle; "
            "build with --target kaggle, then push"
        )


def _push_refusal(build: Path, datasets: list, kernel_folder: Path, kernel_meta: dict) -> str | None:
    """What the push refuses although each folder passes its own checks: the placeholder
    owner, and a dataset the push uploads that the kernel does not attach."""
    kernel_file = f"{KERNEL_FOLDER}/{KERNEL_METADATA}"
    ids = [(f"{folder.name}/{DATASET_METADATA} id", ref) for folder, ref, _meta in datasets]
    ids.append((f"{kernel_file} id", kernel_meta["id"]))
    ids += [(f"{kernel_file} dataset_sources", ref) for ref in kernel_meta.get("dataset_sources") or []]
    uploaded = [ref for _folder, ref, _meta in datasets]
    return placeholder_owner(build, ids) or unattached_datasets(kernel_folder, kernel_meta, uploaded)


# ---------------------------------------------------------------- the CLI and its credentials
def kaggle_executable() -> str:
    """The ``kaggle`` script next to this Python (the same virtual environment), else on PATH."""
    beside = Path(sys.executable).parent / "kaggle"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kaggle")
    if found:
        return found
    raise PushError("the kaggle CLI is not installed: pip install kaggle==2.2.5 six")


def kaggle_config_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where the kaggle CLI looks for kaggle.json, in its order."""
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    return [*dirs, home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]


def has_credentials(env: Mapping[str, str]) -> bool:
    """Whether the CLI will find credentials: KAGGLE_USERNAME + KAGGLE_KEY, KAGGLE_API_TOKEN,
    or a kaggle.json / access_token file where the CLI looks for them."""
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    if env.get("KAGGLE_API_TOKEN"):
        return True
    home = Path(env.get("HOME") or Path.home())
    files = [d / "kaggle.json" for d in kaggle_config_dirs(env)] + [
        home / ".kaggle" / "access_token",
        home / ".kaggle" / "access_token.txt",
    ]
    return any(f.is_file() and f.stat().st_size > 0 for f in files)


def _run(
    step: Step,
    env: Mapping[str, str],
    cwd: Path,
    *,
    no_progress_s: float = NO_PROGRESS_S,
    cap_s: float = COMMAND_TIMEOUT_S,
) -> Step:
    """Run one CLI command, reading what it prints as it comes; :class:`PushError` when it
    printed nothing new for ``no_progress_s`` or ran past ``cap_s``. The command runs in
    its own process group, ended whole whenever this call does not return normally."""
    try:
        child = subprocess.Popen(
            step.command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: ended with whatever it started
        )
    except OSError as exc:
        raise PushError(f"`{_show(step.command)}` could not run: {exc}") from None
    try:
        stdout, stderr = _read_while_progressing(child, step, no_progress_s, cap_s)
    except BaseException as exc:  # a stall, a stop signal (SIGTERM, Ctrl-C), a bug: the CLI ends with it
        _end(child)
        note_ended(exc, f"the kaggle CLI (`{_show(step.command)}`) was ended")
        raise
    finally:
        child.stdout.close()
        child.stderr.close()
    step.returncode = child.returncode
    step.stderr = stderr.decode("utf-8", "replace")
    step.output = stdout.decode("utf-8", "replace") + step.stderr
    return step


def _read_while_progressing(child: subprocess.Popen, step: Step, no_progress_s: float, cap_s: float):
    """The child's stdout and stderr once it has exited. Both pipes are read as bytes
    arrive (neither can fill up and block the child); the CLI's upload bars redraw as
    bytes go out, so silence means a stalled connection or a server that never answers."""
    received: dict[int, list[bytes]] = {child.stdout.fileno(): [], child.stderr.fileno(): []}
    started = last = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for fd in received:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if now - last >= no_progress_s:
                raise PushError(_stalled(step, received, no_progress_s))
            if now - started >= cap_s:
                raise PushError(f"`{_show(step.command)}` still running after {cap_s:g} s; stopped it: push again")
            for key, _events in selector.select(min(last + no_progress_s, started + cap_s) - now):
                data = os.read(key.fd, 1 << 16)
                if data:
                    received[key.fd].append(data)
                    last = time.monotonic()
                else:
                    selector.unregister(key.fd)
    try:
        child.wait(timeout=no_progress_s)  # both pipes closed: it is exiting
    except subprocess.TimeoutExpired:
        raise PushError(_stalled(step, received, no_progress_s)) from None
    stdout, stderr = (b"".join(parts) for parts in received.values())
    return stdout, stderr


def _stalled(step: Step, received: dict[int, list[bytes]], no_progress_s: float) -> str:
    printed = _lines(b"".join(b"".join(parts) for parts in received.values()).decode("utf-8", "replace"))
    last = f" (last line: {printed[-1]})" if printed else ""
    return (
        f"`{_show(step.command)}` made no progress for {no_progress_s:g} s (no output, no upload progress){last}; "
        "stopped it: check the connection and Kaggle's status, then push again"
    )


def _end(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the CLI and anything it started), then reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass  # already gone
    child.wait()


def _show(command: list[str]) -> str:
    return " ".join(["kaggle", *command[1:]])


def _lines(text: str) -> list[str]:
    """Non-empty lines, without tqdm's progress bars."""
    return [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip() and "%|" not in ln]


def _first_line(step: Step) -> str:
    """The line that says what went wrong: a known error line, else stderr's first line
    (where the CLI prints exceptions), else the last line printed."""
    lines = _lines(step.output)
    for ln in lines:
        if any(m in ln for m in _ERROR_MARKERS):
            return ln
    errors = _lines(step.stderr)
    if errors:
        return errors[0]
    return lines[-1] if lines else "(no output)"


def _check(step: Step, success: re.Pattern, what: str) -> str:
    """The URL from the CLI's success line; PushError on a non-zero exit, an error line,
    or output without the success line."""
    output = step.output
    if step.returncode != 0:
        raise PushError(f"{what}: `{_show(step.command)}` failed (exit {step.returncode}): {_first_line(step)}")
    if any(m in output for m in _ERROR_MARKERS):
        raise PushError(f"{what}: Kaggle refused it: {_first_line(step)}")
    found = success.search(output)
    if found is None:
        raise PushError(f"{what}: `{_show(step.command)}` printed no success line: {_first_line(step)}")
    return found.group(1)


@dataclass
class _Kaggle:
    """The kaggle CLI as one push runs it; every command run is kept in ``steps``."""

    executable: str
    env: Mapping[str, str]
    cwd: Path
    steps: list[Step]
    no_progress_s: float = NO_PROGRESS_S

    def run(self, *args: str) -> Step:
        step = _run(Step([self.executable, *args]), self.env, self.cwd, no_progress_s=self.no_progress_s)
        self.steps.append(step)
        return step


def _wait_until_ready(kaggle: _Kaggle, ref: str, echo, wait_s: float) -> None:
    """Poll ``kaggle datasets status`` until Kaggle has processed the upload: a kernel
    pushed while its dataset is still processing can fail to attach it."""
    deadline = time.monotonic() + wait_s
    while True:
        step = kaggle.run("datasets", "status", ref)
        lines = _lines(step.output)
        status = lines[-1].lower() if lines and step.returncode == 0 else ""
        if status == "ready":
            return
        if status in ("failed", "deleted"):  # kagglesdk DatabundleVersionStatus
            raise PushError(f"dataset {ref}: Kaggle could not process the upload (status {status}); see its page")
        if time.monotonic() >= deadline:
            raise PushError(
                f"dataset {ref}: not ready after {wait_s:g} s (last status: {status or _first_line(step)}); "
                "push again once its page says it is ready"
            )
        echo(f"dataset {ref}: {status or 'status unknown'}; waiting for Kaggle to process it")
        time.sleep(min(READY_POLL_S, max(0.0, deadline - time.monotonic())))


def _dataset_exists(kaggle: _Kaggle, ref: str) -> bool:
    step = kaggle.run("datasets", "status", ref)
    if step.returncode == 0:
        return True
    if re.search(r"not found|\b404\b", step.output, re.IGNORECASE):
        return False
    raise PushError(f"dataset {ref}: `{_show(step.command)}` failed (exit {step.returncode}): {_first_line(step)}")


# ---------------------------------------------------------------- the push
def push(
    build_dir: str | os.PathLike,
    *,
    dry_run: bool = False,
    message: str = DEFAULT_MESSAGE,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    ready_wait_s: float = READY_WAIT_S,
    no_progress_s: float = NO_PROGRESS_S,
) -> PushResult:
    """Push the two datasets, then the kernel; return what was pushed and the kernel's URL.

    ``env`` is the CLI's environment (default: this process's). ``dry_run`` prints the
    commands and each folder's metadata through ``echo`` and runs nothing. A command
    that prints nothing for ``no_progress_s`` is stopped (:class:`PushError`)."""
    from ..console import say

    echo = echo or say
    env = dict(os.environ if env is None else env)
    build = Path(build_dir).resolve()
    if not build.is_dir():
        raise PushError(f"{build}: no such build folder; build the bundle first (python build_kernel.py)")
    _refuse_other_targets(build)
    dataset_folders = [_upload_folder(build / name, DATASET_METADATA) for name in DATASET_FOLDERS]
    kernel_folder = _upload_folder(build / KERNEL_FOLDER, KERNEL_METADATA)
    # The same checks as the build: a folder edited by hand since then is caught here,
    # before anything leaves this machine (metadata.py holds every metadata rule).
    refuse_secrets([*dataset_folders, kernel_folder])
    datasets = []
    for folder in dataset_folders:
        meta = check_upload_folder(folder)
        datasets.append((folder, meta["id"], meta))
    kernel_meta = check_upload_folder(kernel_folder)
    refusal = _push_refusal(build, datasets, kernel_folder, kernel_meta)
    result = PushResult(kernel_ref=kernel_meta["id"], dry_run=dry_run)

    if dry_run:
        kaggle = "kaggle"
        for folder, ref, meta in datasets:
            echo(f"# dataset {ref} ({folder}): {DATASET_METADATA}")
            echo(json.dumps(meta, indent=2))
            echo(f"{kaggle} datasets status {ref}")
            echo(f"  if not found: {kaggle} datasets create -p {folder} --dir-mode skip")
            echo(f"  else:         {kaggle} datasets version -p {folder} -m {json.dumps(message)} --dir-mode skip")
            echo(f"  then, until it prints ready: {kaggle} datasets status {ref}")
        echo(f"# kernel {kernel_meta['id']} ({kernel_folder}): {KERNEL_METADATA}")
        echo(json.dumps(kernel_meta, indent=2))
        echo(f"{kaggle} kernels push -p {kernel_folder}")
        if not has_credentials(env):
            echo("note: no Kaggle credentials found (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)")
        if refusal:
            raise PushError(f"a real push would refuse this bundle: {refusal}")
        return result

    if refusal:
        raise PushError(refusal)
    if not has_credentials(env):
        raise PushError(
            "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (Kaggle > Settings > API > Create New Token) "
            "or set KAGGLE_USERNAME and KAGGLE_KEY"
        )
    kaggle = _Kaggle(kaggle_executable(), env, build, result.steps, no_progress_s)
    for folder, ref, _meta in datasets:
        exists = _dataset_exists(kaggle, ref)
        if exists:
            args = ["datasets", "version", "-p", str(folder), "-m", message, "--dir-mode", "skip"]
        else:
            args = ["datasets", "create", "-p", str(folder), "--dir-mode", "skip"]
        action = "version" if exists else "create"
        echo(f"dataset {ref}: {'new version' if exists else 'creating'} from {folder} ...")
        step = kaggle.run(*args)
        url = _check(step, _DATASET_OK, f"dataset {ref}")
        result.datasets[ref] = action
        result.dataset_urls[ref] = url
        echo(f"dataset {ref}: {action} accepted: {url}")
        _wait_until_ready(kaggle, ref, echo, ready_wait_s)

    echo(f"kernel {kernel_meta['id']}: pushing {kernel_folder} ...")
    step = kaggle.run("kernels", "push", "-p", str(kernel_folder))
    result.kernel_url = _check(step, _KERNEL_OK, f"kernel {kernel_meta['id']}")
    echo(f"kernel {kernel_meta['id']}: pushed: {result.kernel_url}")
    return result
