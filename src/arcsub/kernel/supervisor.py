"""The supervisor: worker processes, one per GPU, fed tasks longest first.

It never imports torch (CUDA must not be initialised here: each worker sees only its
own GPU through ``CUDA_VISIBLE_DEVICES``). Each worker runs in its own process group,
so killing one also ends its engine process. The loop:

  * start (or restart) workers while tasks are left and there is time for a start-up;
  * give a free worker the next task with its deadline (``finetune.task_slice``);
  * merge each result into ``submission.json`` as it arrives;
  * a worker that exits, or runs past its task's deadline by ``kernel.grace_s``, costs
    that task only: it keeps the votes its step 1 left on disk (else its fallback), the
    fault is recorded, a fresh worker takes the next task;
  * a worker whose inference engine failed (``engine_failed``) is started again with
    ``inference.backend = "transformers"``; the task it was serving goes on there with
    its adapter and plan, until its own deadline;
  * at the budget's deadline (plus the grace, within the time limit) everything still
    running is killed; what is on disk is already valid.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import KernelConfig
from ..finetune import task_slice
from ..inference import RunStore, select_attempts
from ..submission import make_submission
from ..tasks import Task
from .plan import Budget, order_longest_first, order_smallest_first
from .results import SubmissionBook
from .spec import WorkerSpec

log = logging.getLogger("arcsub.kernel")

POLL_S = 0.5
STOP_WAIT_S = 20.0
MAX_FAILED_STARTS = 2  # a worker that dies this many times before it is ready is not started again
FALLBACK_BACKEND = "transformers"  # what a worker serves with after its vLLM engine failed
MIN_RESUME_S = 5.0  # a task resumed on another engine needs at least this long before its deadline


@dataclass
class Fault:
    task: str | None
    worker: int
    what: str
    at_s: float  # seconds after the kernel's start


@dataclass
class WorkerSlot:
    index: int
    env: dict[str, str]
    spec_path: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    events: int | None = None  # the read end of the worker's events pipe
    pending: bytes = b""  # the start of an event line not read whole yet
    ready: bool = False
    task: str | None = None
    task_deadline: float = 0.0
    failed_starts: int = 0
    starts: int = 0
    error: str = ""
    facts: dict = field(default_factory=dict)
    trained: dict | None = None  # the current task's adapter and plan (the worker's "trained" event)
    engine_failure: dict | None = None  # the worker's "engine_failed" event, until it has exited
    backend_reason: str = ""  # why this worker serves with another backend than configured

    def switch_backend(self, backend: str, why: str) -> None:
        """Start this worker from now on with ``backend`` (its spec file says so)."""
        spec = WorkerSpec.read(str(self.spec_path))
        spec.backend = backend
        self.spec_path.write_text(json.dumps(asdict(spec)))
        self.backend_reason = why

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RunRecord:
    """What the supervisor saw, for the report."""

    results: dict[str, dict] = field(default_factory=dict)  # task id -> the worker's stats
    faults: list[Fault] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # tasks the budget left on their fallback
    startups: list[float] = field(default_factory=list)  # seconds per worker start
    workers: list[dict] = field(default_factory=list)  # per worker start: device, backend (and why), probe
    killed_at_deadline: list[str] = field(default_factory=list)
    salvaged: dict[str, str] = field(default_factory=dict)  # task -> source of the votes kept after a fault
    resumed: list[str] = field(default_factory=list)  # tasks that went on after an engine failure

    def to_dict(self) -> dict:
        values = asdict(self)
        values["faults"] = [asdict(f) for f in self.faults]
        return values


class Supervisor:
    def __init__(
        self,
        tasks: Sequence[Task],
        book: SubmissionBook,
        budget: Budget,
        settings: KernelConfig,
        slots: list[WorkerSlot],
        *,
        task_s: float | None = None,
        predictions_dir: Path | None = None,
        selection: str = "combined",
        smallest_first: bool = False,
    ):
        """``predictions_dir``: where workers keep each task's predictions (votes a
        stopped task keeps); ``smallest_first``: the order for slow workers (CPU), which
        answer more tasks that way than longest first."""
        self.tasks = {t.id: t for t in tasks}
        self.weights = {t.id: float(t.cells) for t in tasks}
        self.predictions_dir = predictions_dir
        self.selection = selection
        self.resume: dict[str, dict] = {}  # task -> {"deadline", "adapter", "plan", "train"} after an engine failure
        # Evaluation at equal budget (arcsub evaluate): slices fixed up front, task_s on
        # average, by weight as the budget's share would be; not the time left.
        total = sum(self.weights.values())
        self.fixed_slices = (
            {tid: task_s * len(self.weights) * w / total for tid, w in self.weights.items()} if task_s and total else {}
        )
        self.queue = (order_smallest_first if smallest_first else order_longest_first)(self.weights)
        self.book = book
        self.budget = budget
        self.settings = settings
        self.slots = slots
        self.record = RunRecord()
        self.stop_at = min(budget.deadline + settings.grace_s, budget.hard_stop - 5.0)

    # ------------------------------------------------------------ the loop

    def run(self) -> RunRecord:
        total = len(self.queue)
        try:
            while self.queue or any(s.task for s in self.slots):
                now = time.time()
                if now >= self.stop_at:
                    self.kill_all("the budget's deadline")
                    break
                self.start_workers(now)
                if not any(s.alive for s in self.slots) and not self.can_start(now):
                    break
                self.assign(now)
                self.read_events()
                self.check_workers(time.time())
                if self.queue and not any(s.alive or self.can_restart(s) for s in self.slots):
                    log.warning("no worker can run: %d task(s) keep their fallback", len(self.queue))
                    break
        finally:
            self.stop_workers()
        self.record.not_started = list(self.queue)
        done = len(self.record.results)
        log.debug("kernel: %d/%d task(s) done, %d fault(s)", done, total, len(self.record.faults))
        return self.record

    # ------------------------------------------------------------ workers

    def expected_startup(self) -> float:
        return max(self.record.startups) if self.record.startups else 0.0

    def can_start(self, now: float) -> bool:
        """Worth starting a worker: a start-up and something of a task fit before the deadline."""
        return bool(self.queue) and now + 1.5 * self.expected_startup() < self.budget.deadline

    def can_restart(self, slot: WorkerSlot) -> bool:
        return slot.failed_starts < MAX_FAILED_STARTS and self.can_start(time.time())

    def start_workers(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None and self.can_restart(slot):
                self.start(slot)

    def start(self, slot: WorkerSlot) -> None:
        read_fd, write_fd = os.pipe()
        with open(slot.log_path, "a") as log_file:
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", "arcsub.kernel.worker", "--spec", str(slot.spec_path),
                 "--events-fd", str(write_fd)],
                stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                env=slot.env, pass_fds=(write_fd,), start_new_session=True, text=True,
            )  # fmt: skip
        os.close(write_fd)
        slot.events, slot.pending = read_fd, b""
        slot.ready, slot.task, slot.starts = False, None, slot.starts + 1
        log.debug("worker %d: starting (log: %s)", slot.index, slot.log_path)

    def assign(self, now: float) -> None:
        for slot in self.slots:
            if not (slot.alive and slot.ready and slot.task is None and self.queue):
                continue
            task_id = self.queue[0]
            if task_id in self.resume:
                self.assign_resumed(slot, task_id, now)
                continue
            others = [self.busy_until(s, now) for s in self.slots if s is not slot and s.alive]
            waiting = sum(self.weights[t] for t in self.queue)
            seconds = task_slice(self.weights[task_id], waiting, now, self.budget.deadline, others)
            if self.fixed_slices:
                seconds = min(self.fixed_slices[task_id], max(0.0, self.budget.deadline - now))
            if seconds <= 1.0:
                return  # nothing left to give: the rest keep their fallback
            self.queue.pop(0)
            slot.task, slot.task_deadline, slot.trained = task_id, now + seconds, None
            self.send(slot, {"task": task_id, "deadline": slot.task_deadline})
            log.debug("worker %d: %s, %.0fs", slot.index, task_id, seconds)

    def assign_resumed(self, slot: WorkerSlot, task_id: str, now: float) -> None:
        """A task whose engine failed goes on with its adapter and plan until its own deadline."""
        self.queue.pop(0)
        resume = self.resume.pop(task_id)
        if resume["deadline"] - now < MIN_RESUME_S:
            log.warning("task %s: no time left to go on after the engine failure; it keeps %s",
                        task_id, self.book.sources.get(task_id, "its fallback"))  # fmt: skip
            return
        slot.task, slot.task_deadline, slot.trained = task_id, resume["deadline"], None
        self.record.resumed.append(task_id)
        self.send(slot, {"task": task_id, "deadline": resume["deadline"], "resume": resume})
        log.info("worker %d: task %s goes on with %s (%.0fs left)", slot.index, task_id,
                 FALLBACK_BACKEND, resume["deadline"] - now)  # fmt: skip

    def busy_until(self, slot: WorkerSlot, now: float) -> float:
        if slot.task:
            return slot.task_deadline
        return now if slot.ready else now + self.expected_startup()

    def send(self, slot: WorkerSlot, message: dict) -> None:
        try:
            slot.proc.stdin.write(json.dumps(message) + "\n")
            slot.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # it died: check_workers records it

    def read_events(self) -> None:
        """Whole event lines from every worker that wrote some (raw reads: a buffered
        reader could hold a second line back from ``select``)."""
        readers = {s.events: s for s in self.slots if s.events is not None}
        if not readers:
            time.sleep(POLL_S)
            return
        ready, _, _ = select.select(list(readers), [], [], POLL_S)
        for fd in ready:
            self.take_events(readers[fd], os.read(fd, 1 << 20))

    def take_events(self, slot: WorkerSlot, data: bytes) -> None:
        if not data:  # the worker closed its end: it is exiting
            os.close(slot.events)
            slot.events, slot.pending = None, b""
            return
        *lines, slot.pending = (slot.pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.on_event(slot, json.loads(line))

    def on_event(self, slot: WorkerSlot, event: dict) -> None:
        kind = event["event"]
        if kind == "ready":
            slot.ready, slot.failed_starts = True, 0
            slot.facts = {k: v for k, v in event.items() if k not in ("event", "worker")}
            self.record.startups.append(event["startup_s"])
            self.record.workers.append({"worker": slot.index, "start": slot.starts, **slot.facts,
                                        "backend_reason": slot.backend_reason or None})  # fmt: skip
            attention = ", ".join(event.get("attention") or []) or "-"
            log.info("worker %d: ready in %.0fs on %s (attention %s; log: %s)", slot.index, event["startup_s"],
                     event.get("backend", "?"), attention, slot.log_path.name)  # fmt: skip
        elif kind == "trained":
            slot.trained = event
        elif kind == "engine_failed":
            slot.engine_failure = event
        elif kind == "done":
            task_id = event["task"]
            self.book.add(task_id, event["attempts"], event["source"])
            self.record.results[task_id] = event["stats"]
            self.record.salvaged.pop(task_id, None)  # resumed after an engine failure, and finished
            slot.task = None
            stats = event["stats"]
            steps = (stats.get("train") or {}).get("steps", 0)
            log.info(
                "task %s done (%d/%d): %d steps, %s, %.0fs",
                task_id, len(self.record.results), len(self.tasks), steps, event["source"], stats["seconds"],
            )  # fmt: skip
        elif kind == "failed":
            slot.error = event.get("error", "")

    def check_workers(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None:
                continue
            if slot.proc.poll() is None:
                if slot.task and now > slot.task_deadline + self.settings.grace_s:
                    task = slot.task
                    self.fault(slot, f"ran {now - slot.task_deadline:.0f}s past its task's deadline; killed")
                    self.kill(slot)
                    self.salvage(task)
                continue
            self.drain(slot)
            code = slot.proc.returncode
            if slot.engine_failure is not None:
                self.engine_failed(slot, now)
            elif slot.task or not slot.ready or code != 0:
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                self.fault(slot, f"worker {how}" + (f": {slot.error}" if slot.error else ""))
                if not slot.ready:
                    slot.failed_starts += 1
                if slot.task:
                    self.salvage(slot.task)
            slot.proc, slot.ready, slot.task, slot.error = None, False, None, ""
            slot.trained, slot.engine_failure = None, None

    def engine_failed(self, slot: WorkerSlot, now: float) -> None:
        """The worker's engine failed (at start, or in a task): from now on it serves with
        transformers; the task it was serving goes on there with its adapter and plan."""
        failure = slot.engine_failure or {}
        error = failure.get("error", "")
        self.fault(slot, f"the {failure.get('backend', 'vllm')} engine failed: {error}")
        slot.switch_backend(FALLBACK_BACKEND, error)
        task = slot.task
        if task is None:
            return
        self.salvage(task)
        trained = slot.trained if slot.trained and slot.trained.get("task") == task else None
        if trained is not None and slot.task_deadline - now >= MIN_RESUME_S:
            self.resume[task] = {
                "deadline": slot.task_deadline, "adapter": trained.get("adapter"), "plan": trained["plan"],
                "train": trained.get("train"),
            }  # fmt: skip
            self.queue.insert(0, task)

    def salvage(self, task_id: str) -> None:
        """A task whose worker stopped keeps what its step 1 left on disk (its votes),
        or its scores when step 2 had finished; else its fallback stays."""
        if self.predictions_dir is None or task_id in self.record.results:
            return
        store = RunStore(Path(self.predictions_dir) / task_id)
        if not (store.has("sample", task_id) or store.has("score", task_id)):
            return
        try:
            selection = select_attempts([self.tasks[task_id]], store, self.selection)
        except (OSError, ValueError, KeyError) as exc:  # a file cut short by the kill
            log.warning("task %s: its predictions on disk are unreadable (%s); it keeps its fallback", task_id, exc)
            return
        source = selection.source[task_id]
        if source != "fallback" and self.book.add(task_id, make_submission(selection.attempts)[task_id], source):
            self.record.salvaged[task_id] = source
            log.info("task %s: the attempts from its %s on disk are kept", task_id,
                     "votes" if source == "sample" else "scores")  # fmt: skip

    def drain(self, slot: WorkerSlot) -> None:
        """Events the worker wrote before it exited (a result may be among them)."""
        while slot.events is not None:
            try:
                self.take_events(slot, os.read(slot.events, 1 << 20))
            except ValueError:  # a line cut short by the kill: nothing more to read
                os.close(slot.events)
                slot.events, slot.pending = None, b""

    def fault(self, slot: WorkerSlot, what: str) -> None:
        fault = Fault(slot.task, slot.index, what, round(time.time() - self.budget.start, 1))
        self.record.faults.append(fault)
        where = f"task {slot.task}" if slot.task else "start-up"
        log.warning("worker %d: %s during %s; %s", slot.index, what, where,
                    "the task keeps its votes or its fallback" if slot.task else "it will be started again")  # fmt: skip

    def kill(self, slot: WorkerSlot) -> None:
        if slot.proc is None:
            return
        try:
            os.killpg(slot.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        slot.proc.wait()
        self.drain(slot)
        slot.proc, slot.ready, slot.task = None, False, None
        slot.trained, slot.engine_failure = None, None

    def kill_all(self, why: str) -> None:
        for slot in self.slots:
            task = slot.task
            if task:
                self.record.killed_at_deadline.append(task)
                self.fault(slot, f"stopped at {why}")
            self.kill(slot)
            if task:
                self.salvage(task)

    def stop_workers(self) -> None:
        for slot in self.slots:
            if slot.alive:
                self.send(slot, {"stop": True})
                try:
                    slot.proc.stdin.close()
                except OSError:
                    pass
        end = time.time() + STOP_WAIT_S
        for slot in self.slots:
            if slot.proc is not None:
                try:
                    slot.proc.wait(timeout=max(0.1, end - time.time()))
                except subprocess.TimeoutExpired:
                    pass
                self.kill(slot)  # the whole group: an engine process left behind included
