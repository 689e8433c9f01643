"""The supervisor inside the simulator's namespaces (process 1 of the new PID namespace).

Run by file path, standard library only, as
``unshare --net --mount --pid --fork --mount-proc --kill-child -- python -I sandbox.py SPEC``
where SPEC is a JSON object: ``host_kaggle`` (OUT/kaggle), ``mountpoint`` (/kaggle),
``working_bytes`` (the tmpfs size), ``hide`` (host folders to cover with an empty
read-only tmpfs), ``argv`` and ``cwd`` of the kernel, ``status`` (where to write what
happened). The kernel gets this process's environment and its stdout/stderr.

It brings loopback up, makes every mount private, binds OUT/kaggle onto /kaggle, puts a
size-limited tmpfs on /kaggle/working, remounts /kaggle/input read-only, runs the
kernel, and when the kernel's main process is gone (it ended, or the simulator killed
its tree at a limit) kills whatever is left in the namespace (Kaggle ends the session
with the script), then copies /kaggle/working to OUT/kaggle/working on the host: the
tmpfs dies with the namespace. ``status`` records each step, the kernel's exit code and
its start and end on the monotonic clock (shared with the simulator).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

SETUP_FAILED = 97


def _write_status(path: str, status: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(status, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _run(status: dict, *argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    status["setup"].append(" ".join(argv))


def _setup(spec: dict, status: dict) -> None:
    mountpoint = spec["mountpoint"]
    working = f"{mountpoint}/working"
    _run(status, "ip", "link", "set", "lo", "up")
    _run(status, "mount", "--make-rprivate", "/")
    _run(status, "mount", "--bind", spec["host_kaggle"], mountpoint)
    _run(status, "mount", "-t", "tmpfs", "-o", f"size={int(spec['working_bytes'])},mode=0755", "tmpfs", working)
    _run(status, "mount", "--bind", f"{mountpoint}/input", f"{mountpoint}/input")
    _run(status, "mount", "-o", "remount,bind,ro", f"{mountpoint}/input")
    for path in spec.get("hide", []):
        _run(status, "mount", "-t", "tmpfs", "-o", "size=4k,mode=0755,ro", "tmpfs", path)


def _still_running() -> list[str]:
    """Command names of the namespace's live processes other than this one (/proc is its own)."""
    names = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if rest.split()[0] != "Z":
            names.append(name)
    return sorted(names)


def _kill_the_rest() -> int:
    """Kill every other process of the namespace and reap them; returns how many were left."""
    try:
        os.kill(-1, signal.SIGKILL)  # from process 1: everyone in the namespace but itself
    except ProcessLookupError:
        pass
    reaped = 0
    while True:
        try:
            os.waitpid(-1, 0)
            reaped += 1
        except ChildProcessError:
            return reaped


def _copy_out(working: str, host_working: str, status: dict) -> None:
    stat = os.statvfs(working)
    status["working_used_bytes"] = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    try:
        shutil.copytree(working, host_working, symlinks=True, dirs_exist_ok=True)
    except shutil.Error as exc:
        status["copy_errors"] = [str(e) for e in exc.args[0]][:20]
    except OSError as exc:
        status["copy_errors"] = [str(exc)]


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    status: dict = {"setup": [], "error": None}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the simulator decides when the run ends
    try:
        _setup(spec, status)
    except (OSError, RuntimeError) as exc:
        status["error"] = str(exc)
        _write_status(spec["status"], status)
        return SETUP_FAILED
    status["kernel_start"] = time.monotonic()
    _write_status(spec["status"], status)
    kernel = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=subprocess.DEVNULL)
    status["kernel_exit_code"] = kernel.wait()
    status["kernel_end"] = time.monotonic()
    _write_status(spec["status"], status)  # the simulator stops the clock here
    status["left_running"] = _still_running()  # Kaggle ends the session with the script: killed
    _kill_the_rest()
    _copy_out(f"{spec['mountpoint']}/working", f"{spec['host_kaggle']}/working", status)
    status["copied"] = True
    _write_status(spec["status"], status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
