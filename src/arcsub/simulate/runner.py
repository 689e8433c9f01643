"""Run a kernel process and hold it to its limits, as Kaggle would.

Two ways to run it (see ``arcsub.simulate``): inside new network, mount and PID
namespaces under the supervisor in ``sandbox.py`` (``namespace``), or as a plain child
process (``fallback``). Either way this process watches from outside: the wall clock
(the whole tree is SIGKILLed at the budget), the memory of the kernel's process tree
(PSS summed over the tree, polled; killed past the limit), in fallback mode the size of
the working folder (killed past the limit; a namespace run has a tmpfs of that size
instead), and ``--kill-worker-after``. What the kernel prints passes through, prefixed,
and into the kernel log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..io import folder_bytes
from ..signals import note_ended

NO_NAMESPACE_ENV = "ARCSUB_SIMULATE_NO_NAMESPACE"
NAMESPACE_FLAGS = ("--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child")
SANDBOX_SCRIPT = Path(__file__).with_name("sandbox.py")
WORKER_MARK = "arcsub.kernel.worker"
POLL_S = 0.1  # the clock and the end of the kernel
RAM_POLL_S = 0.25
DISK_POLL_S = 1.0
KILL_WORKER_SEARCH_S = 5.0  # keep looking for a worker this long after --kill-worker-after
COPY_OUT_TIMEOUT_S = 300.0  # the supervisor's copy of /kaggle/working after the kernel ended
LINE_LIMIT = 1 << 16
# RLIMIT_FSIZE for the kernel, then exec it (same process): no preexec_fn beside threads.
FILE_SIZE_TRAMPOLINE = (
    "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def namespace_support() -> tuple[bool, str]:
    """Whether a kernel can run in new network, mount and PID namespaces here, and why not."""
    if os.environ.get(NO_NAMESPACE_ENV, "") not in ("", "0"):
        return False, f"{NO_NAMESPACE_ENV} is set"
    missing = [tool for tool in ("unshare", "ip", "mount") if shutil.which(tool) is None]
    if missing:
        return False, f"{', '.join(missing)} not found"
    try:
        probe = subprocess.run(
            ["unshare", *NAMESPACE_FLAGS, "--", "true"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed ({exc})"
    if probe.returncode != 0:
        return False, f"unshare is not permitted here ({probe.stderr.strip() or probe.returncode})"
    return True, "unshare " + " ".join(NAMESPACE_FLAGS)


@dataclass
class Launch:
    """What to start: argv (the kernel itself, or ``unshare`` + the supervisor)."""

    mode: str  # namespace | fallback
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    status_path: Path | None = None  # namespace: the supervisor's status file
    watch_disk: Path | None = None  # fallback: the folder whose size is watched
    file_size_limit: int | None = None  # fallback: RLIMIT_FSIZE for the kernel


@dataclass
class Limits:
    budget_s: float
    ram_bytes: int
    disk_bytes: int
    kill_worker_after_s: float | None = None


@dataclass
class RunRecord:
    exit_code: int | None = None
    elapsed_s: float = 0.0
    peak_ram_bytes: int = 0
    killed: dict | None = None  # {"by": deadline|ram|disk, "at_s", "detail"}
    kill_worker: dict | None = None
    peak_disk_bytes: int | None = None  # fallback: the watcher's largest reading
    left_running: list[str] = field(default_factory=list)  # killed after the main process ended
    sandbox: dict = field(default_factory=dict)  # namespace: the supervisor's status
    problems: list[str] = field(default_factory=list)  # the simulator's own trouble


def _read_status(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _pump(stream, log_path: Path, echo: Callable[[str], None]) -> None:
    """Every line the kernel prints: into the log as is, to ``echo`` prefixed."""
    with open(log_path, "ab") as log:
        while True:
            raw = stream.readline(LINE_LIMIT)
            if not raw:
                break
            log.write(raw)
            log.flush()
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            shown = [part for part in text.split("\r") if part.strip()]  # a progress bar's last state
            echo(f"kernel| {shown[-1] if shown else ''}")
    stream.close()


class Watch:
    """The loop that runs beside the kernel until its main process is gone."""

    def __init__(self, launch: Launch, limits: Limits, proc: subprocess.Popen, start: float, note):
        self.launch, self.limits, self.proc, self.start, self.note = launch, limits, proc, start, note
        self.record = RunRecord()
        self.worker_misses = 0
        self.next_disk = 0.0
        self.next_ram = 0.0

    def tree(self) -> list[psutil.Process]:
        """The kernel's processes: in namespace mode everything under the supervisor."""
        try:
            root = psutil.Process(self.proc.pid)
            if self.launch.mode == "fallback":
                return [root, *root.children(recursive=True)]
            return [p for sup in root.children() for p in sup.children(recursive=True)]
        except psutil.Error:
            return []

    def memory(self, procs: list[psutil.Process]) -> int:
        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except psutil.AccessDenied:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def kill_tree(self) -> None:
        for _ in range(50):
            procs = self.tree()
            if self.launch.mode == "fallback" and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            live = []
            for p in procs:
                try:
                    if p.status() != psutil.STATUS_ZOMBIE:
                        p.kill()
                        live.append(p)
                except psutil.Error:
                    continue
            if not live:
                return
            time.sleep(0.05)

    def kill(self, by: str, detail: str, now: float) -> None:
        self.record.killed = {"by": by, "at_s": round(now - self.start, 3), "detail": detail}
        self.note(f"killing the kernel: {detail}")
        self.kill_tree()

    def kill_leftovers(self) -> list[str]:
        """Fallback: the kernel's process group outlives its main process; Kaggle ends
        the session with the script, so kill what is left (named for the report)."""
        names = []
        for p in psutil.process_iter(["name"]):
            try:
                if p.pid != os.getpid() and os.getpgid(p.pid) == self.proc.pid and p.status() != psutil.STATUS_ZOMBIE:
                    names.append(p.info["name"])
            except (OSError, psutil.Error):
                continue
        if names:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        return sorted(names)

    def kernel_done(self) -> bool:
        if self.proc.poll() is not None:
            return True
        return "kernel_end" in _read_status(self.launch.status_path)

    def kill_worker(self, procs: list[psutil.Process], elapsed: float) -> None:
        after = self.limits.kill_worker_after_s
        if after is None or elapsed < after or (self.record.kill_worker or {}).get("done"):
            return
        workers = []  # (start time, pid, command line, process): the oldest first
        for p in procs:
            try:
                cmdline = " ".join(p.cmdline())
                if WORKER_MARK in cmdline:
                    workers.append((p.create_time(), p.pid, cmdline, p))
            except psutil.Error:
                continue
        victim = None
        for _, _, cmdline, p in sorted(workers, key=lambda w: w[:2]):
            try:
                p.kill()
                victim = p
                break
            except psutil.Error:
                continue
        if victim is not None:
            cmdline = cmdline[:300]
            self.record.kill_worker = {
                "after_s": after,
                "at_s": round(elapsed, 3),
                "killed": True,
                "pid": victim.pid,
                "cmdline": cmdline,
                "misses": self.worker_misses,
                "done": True,
            }
            self.note(f"killed worker process {victim.pid} at {elapsed:.1f} s (--kill-worker-after {after:g})")
        elif elapsed >= after + KILL_WORKER_SEARCH_S:
            self.record.kill_worker = {
                "after_s": after,
                "killed": False,
                "detail": f"no worker to kill: no process with {WORKER_MARK} in its command line "
                f"between {after:g} s and {after + KILL_WORKER_SEARCH_S:g} s",
                "done": True,
            }
            self.note(self.record.kill_worker["detail"])
        else:
            self.worker_misses += 1
            if self.worker_misses == 1:
                self.record.kill_worker = {
                    "after_s": after,
                    "killed": False,
                    "detail": f"no worker to kill at {elapsed:.1f} s; still looking",
                }
                self.note(f"no worker to kill at {elapsed:.1f} s; looking for {KILL_WORKER_SEARCH_S:g} s more")

    def run(self) -> RunRecord:
        deadline = self.start + self.limits.budget_s
        while not self.kernel_done():
            now = time.monotonic()
            if now >= deadline:
                self.kill("deadline", f"the budget of {self.limits.budget_s:g} s is spent", now)
                break
            procs = self.tree()
            if now >= self.next_ram:
                self.next_ram = now + RAM_POLL_S
                ram = self.memory(procs)
                self.record.peak_ram_bytes = max(self.record.peak_ram_bytes, ram)
                if ram > self.limits.ram_bytes:
                    limit = self.limits.ram_bytes / 2**30
                    self.kill("ram", f"memory {ram / 2**30:.2f} GiB over the limit of {limit:.2f} GiB", now)
                    break
            if self.launch.watch_disk is not None and now >= self.next_disk:
                self.next_disk = now + DISK_POLL_S
                used = folder_bytes(self.launch.watch_disk)
                self.record.peak_disk_bytes = max(self.record.peak_disk_bytes or 0, used)
                if used > self.limits.disk_bytes:
                    self.kill("disk", f"working folder {used} bytes over the limit of {self.limits.disk_bytes}", now)
                    break
            self.kill_worker(procs, now - self.start)
            try:
                self.proc.wait(timeout=max(0.01, min(POLL_S, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        return self.finish(time.monotonic())

    def finish(self, stopped: float) -> RunRecord:
        record = self.record
        if self.launch.mode == "fallback":
            self.proc.wait()
            record.exit_code = self.proc.returncode
            record.elapsed_s = round(stopped - self.start, 3)
            record.left_running = self.kill_leftovers()
            return record
        try:
            self.proc.wait(timeout=COPY_OUT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            record.problems.append(f"the supervisor did not finish copying /kaggle/working in {COPY_OUT_TIMEOUT_S:g} s")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        record.sandbox = _read_status(self.launch.status_path)
        record.left_running = record.sandbox.get("left_running", [])
        record.exit_code = record.sandbox.get("kernel_exit_code")
        record.elapsed_s = round(record.sandbox.get("kernel_end", stopped) - self.start, 3)
        if record.sandbox.get("error"):
            record.problems.append(
                f"namespace set-up failed: {record.sandbox['error']}; rerun with --no-namespace "
                f"(or {NO_NAMESPACE_ENV}=1)"
            )
        elif not record.sandbox.get("copied"):
            record.problems.append(
                f"the supervisor ended without copying /kaggle/working (exit {self.proc.returncode})"
            )
        return record


def launch_kernel(launch: Launch, limits: Limits, *, log_path: Path, echo, note) -> RunRecord:
    """Start ``launch``, pass its output through, hold it to ``limits``; the record of the run."""
    argv = launch.argv
    if launch.file_size_limit is not None:  # set in the child, which then becomes the kernel
        argv = [sys.executable, "-c", FILE_SIZE_TRAMPOLINE, str(launch.file_size_limit), *argv]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=launch.cwd,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the terminal's Ctrl-C reaches the simulator only; it ends the run
    )
    pump = threading.Thread(target=_pump, args=(proc.stdout, log_path, echo), daemon=True)
    pump.start()
    watch = Watch(launch, limits, proc, start, note)
    try:
        record = watch.run()
    except BaseException as exc:  # a stop signal (SIGTERM, Ctrl-C) or a bug: the kernel ends with this process
        kernel = len(watch.tree())
        watch.kill_tree()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # fallback: the kernel's group; namespace: unshare and process 1
        except OSError:
            pass
        proc.wait()
        note_ended(exc, f"the kernel's {kernel} process{'es were' if kernel != 1 else ' was'} ended")
        raise
    pump.join(timeout=10)
    if record.kill_worker:
        record.kill_worker.pop("done", None)
    return record
