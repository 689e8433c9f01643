"""Measuring what one model costs on the machine at hand, and fitting a cost model.

``measure_profile(model, out_path)``: load the model for training (LoRA as
configured), time TTFT steps (the real loop, ``finetune.train_examples``) against
sequence length with the peak GPU memory of each, save the adapter, start the
configured inference backend with it, time generation (prefill and decode separately)
against batch size and prompt length and scoring (answer log-probabilities), fit
:class:`~arcsub.profile.cost_model.CostModel` stages by least squares, and write it
all to ``profile.json`` (machine facts, raw measurements, fitted coefficients).

Sequences are token slices of locally generated ARC-like text
(``models.synthetic_text``), so no dataset is needed; a training sequence's last
``answer`` tokens carry the loss, as an ARC answer does. A registered candidate name
(``SmolLM2-135M``, ``Qwen2.5-0.5B``) is measured as a random-weight model of its full
published shape: costs do not depend on weight values, and nothing is downloaded.
torch, transformers and the engines are imported inside the functions.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Config
from ..console import progress_bar, say
from ..hardware import nvidia_gpus
from ..io import write_json_atomic
from ..models import (
    CANDIDATES,
    CHAT_NAME,
    DEFAULT_NAME,
    CandidateModel,
    candidate_names,
    model_folder,
    model_window,
    read_config,
)
from ..models import config_facts as facts
from .cost_model import FORMAT, STAGE_TERMS, VERSION, CostModel, ProfilingError, fit_terms

FULL_SHAPE_FILE = "arcsub-full-shape.json"


@dataclass(frozen=True)
class MeasureGrid:
    """Where to measure. Lengths past the model's window or ``max_seq_len`` are dropped."""

    train_lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
    train_steps: int = 4  # per length; the first is a warm-up, the median of the others counts
    train_answer: int = 128  # labelled tokens at the end of each training sequence
    gen_batches: tuple[int, ...] = (1, 8, 32)
    gen_prompts: tuple[int, ...] = (512, 2048)
    gen_new_tokens: int = 64
    score_batches: tuple[int, ...] = (1, 4)
    score_prompts: tuple[int, ...] = (512, 2048)
    score_answer: int = 128
    repeats: int = 2  # generation and scoring calls per point; the fastest counts (others share the machine)

    @classmethod
    def quick(cls) -> MeasureGrid:
        return cls(
            train_lengths=(128, 256),
            train_steps=3,
            train_answer=32,
            gen_batches=(1, 4),
            gen_prompts=(64, 128),
            gen_new_tokens=16,
            score_batches=(1, 4),
            score_prompts=(64, 128),
            score_answer=16,
        )

    def capped(self, limit: int) -> MeasureGrid:
        def keep(values, extra=0):
            kept = tuple(v for v in values if v + extra <= limit)
            return kept or (max(16, limit - extra),)

        return replace(
            self,
            train_lengths=keep(self.train_lengths),
            gen_prompts=keep(self.gen_prompts, self.gen_new_tokens),
            score_prompts=keep(self.score_prompts, self.score_answer),
        )

    def points(self) -> int:
        gen = len(self.gen_batches) * len(self.gen_prompts)
        return len(self.train_lengths) + gen + len(self.score_batches) * len(self.score_prompts)


# ---------------------------------------------------------------- which model


def resolve_candidate(name: str) -> CandidateModel | None:
    """A registered candidate by its name or a unique prefix of it (``Qwen2.5-0.5B``)."""
    lowered = name.lower()
    exact = [c for c in CANDIDATES if c.name.lower() == lowered]
    if exact:
        return exact[0]
    prefixed = [c for c in CANDIDATES if c.name.lower().startswith(lowered)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise ProfilingError(f"{name}: matches several candidates ({', '.join(c.name for c in prefixed)}); name one")
    return None


def model_config(
    model: str | os.PathLike, label: str | None = None
) -> tuple[str, dict[str, Any], CandidateModel | None]:
    """(label, config.json values, candidate) for a model folder (labelled ``label``, else
    by its name) or a candidate name. Names such as ``default`` are resolved to folders at
    the command's edge (``models.resolve_model``), not here."""
    if Path(model).is_dir():
        return label or Path(model).name, read_config(model_folder(model)), None
    if str(model) in (DEFAULT_NAME, CHAT_NAME):
        raise ProfilingError(f"{model}: a name to resolve first (arcsub.models.resolve_model); pass its folder")
    candidate = resolve_candidate(str(model))
    if candidate is None:
        raise ProfilingError(
            f"{model}: not a model folder, 'default', nor a registered candidate; candidates: "
            f"{', '.join(candidate_names())}"
        )
    return candidate.name, dict(candidate.config), candidate


def check_buildable(candidate: CandidateModel) -> None:
    """Refuse, before any work, a candidate whose full shape cannot be built here."""
    if (
        candidate.unknown
        or facts.count_parameters(candidate.config) is None
        or candidate.architecture.startswith("OpenELM")
    ):
        raise ProfilingError(
            f"{candidate.name}: cannot build its full shape here (unchecked facts: "
            f"{', '.join(candidate.unknown) or 'none'}; remote-code architectures cannot be built); "
            "use the analytic estimate (no `measure`)"
        )


def check_measurable(model: str | os.PathLike) -> None:
    """Raise now (one line) for a model ``measure_profile`` would fail on later."""
    _, _, candidate = model_config(model)
    if candidate is not None:
        check_buildable(candidate)


def build_full_shape(candidate: CandidateModel, dst: str | os.PathLike, *, seed: int = 0) -> Path:
    """A random-weight model of the candidate's FULL published config (fp16 weights on
    disk), with a small stand-in tokenizer in the original's style (ChatML markers for
    SmolLM and Qwen, LLaMA-2-style otherwise): costs depend on the shape, not on the
    weights or the tokenizer's merges; the embedding keeps the published vocabulary."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..models import llama_style_tokenizer, qwen_style_tokenizer

    check_buildable(candidate)
    chatml = candidate.tokenizer.eos == "<|im_end|>"
    tokenizer = qwen_style_tokenizer() if chatml else llama_style_tokenizer()
    cfg = {k: v for k, v in candidate.config.items() if k != "architectures"}
    for key, token in (("bos_token_id", candidate.tokenizer.bos), ("eos_token_id", candidate.tokenizer.eos)):
        if token and token != "none" and token in tokenizer.get_vocab():
            cfg[key] = tokenizer.convert_tokens_to_ids(token)
        else:
            cfg.pop(key, None)
    cfg["pad_token_id"] = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else cfg.get("eos_token_id")
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    config.architectures = list(candidate.config["architectures"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    dst = Path(dst)
    model.save_pretrained(dst)
    tokenizer.model_max_length = candidate.config.get("max_position_embeddings", 2048)
    tokenizer.save_pretrained(dst)
    (dst / FULL_SHAPE_FILE).write_text(f'{{"candidate": "{candidate.name}", "weights": "random"}}\n')
    return dst


# ---------------------------------------------------------------- the machine


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(device) -> dict[str, Any]:
    import torch
    import transformers

    found = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "device_name": f"CPU: {_cpu_name()}",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        found.update(
            device_name=torch.cuda.get_device_name(device),
            gpu_memory_bytes=props.total_memory,
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            driver=next((g["driver"] for g in nvidia_gpus()), None),
        )
    return found


# ---------------------------------------------------------------- sequences


class TokenStream:
    """Token ids of locally generated ARC-like text; slices at random offsets make
    distinct prompts (so no prefix cache can serve one from another)."""

    def __init__(self, tokenizer, vocab_limit: int, seed: int = 0, min_tokens: int = 20_000):
        from ..models import corpus

        rng = random.Random(seed)
        ids: list[int] = []
        while len(ids) < min_tokens:
            ids += tokenizer("".join(corpus(rng, 200)), add_special_tokens=False)["input_ids"]
        self.ids = [i if i < vocab_limit else i % vocab_limit for i in ids]
        self.rng = rng

    def take(self, length: int) -> list[int]:
        while len(self.ids) < length + 1:
            self.ids = self.ids + self.ids
        start = self.rng.randrange(0, len(self.ids) - length)
        return self.ids[start : start + length]


def training_example(stream: TokenStream, length: int, answer: int):
    from ..prompts import IGNORE_INDEX, TokenizedPrompt

    ids = stream.take(length)
    answer = max(1, min(answer, length - 1))
    prompt = length - answer
    return TokenizedPrompt(ids, [IGNORE_INDEX] * prompt + ids[prompt:], prompt)


# ---------------------------------------------------------------- stages


def timed_training(model, examples, ft, device, steps: int, label: str):
    """``steps`` steps of the real loop, each timed (synchronised on CUDA); returns the
    result, the seconds of each step, and the peak CUDA memory (None elsewhere)."""
    import torch

    from ..finetune import train_examples

    stamps: list[float] = []

    def stamp(_state) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    result = train_examples(model, examples, ft, max_steps=steps, on_step=stamp, progress=False, label=label)
    seconds = [b - a for a, b in zip([started, *stamps], stamps, strict=False)]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return result, seconds, peak


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def measure_training(model, config: Config, stream: TokenStream, grid: MeasureGrid, device, bar) -> list[dict]:
    """Median TTFT step time (and peak GPU memory) per sequence length."""

    ft = replace(config.finetune, warmup_steps=0, log_every=10_000, steps=grid.train_steps)
    rows = []
    for length in grid.train_lengths:
        example = training_example(stream, length, grid.train_answer)
        try:
            result, steps, peak = timed_training(model, [example], ft, device, grid.train_steps, f"{length}")
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc):
                raise
            rows.append({"tokens": length, "error": "out of memory"})
            bar.update(1)
            break
        timed = steps[1:] or steps  # the first step pays for set-up and warm-up
        row = {
            "tokens": length,
            "step_s": [round(s, 5) for s in steps],
            "median_s": statistics.median(timed),
            "precision": result.precision,
            "skipped_steps": result.skipped_steps,
        }
        if peak is not None:
            row["peak_memory_bytes"] = peak
        rows.append(row)
        bar.update(1)
    return rows


def measure_generation(backend, stream: TokenStream, grid: MeasureGrid, adapter: str | None, bar) -> list[dict]:
    """Per (batch, prompt): prefill-only calls (1 new token) and full calls, the
    fastest of ``grid.repeats`` each; decode time is their difference."""
    from ..inference import GenerationRequest

    def run(batch: int, prompt: int, new: int) -> tuple[float, int]:
        requests = [GenerationRequest(tuple(stream.take(prompt)), 1, new, 0.0, adapter) for _ in range(batch)]
        started = time.perf_counter()
        out = backend.generate(requests)
        seconds = time.perf_counter() - started
        return seconds, max(len(c.token_ids) for completions in out for c in completions)

    run(1, min(grid.gen_prompts), 2)  # warm-up (kernels, adapter load)
    rows = []
    for prompt in grid.gen_prompts:
        for batch in grid.gen_batches:
            if hasattr(backend, "batch_size"):
                backend.batch_size = batch  # the transformers backend: one generate call per batch
            prefill_s = min(run(batch, prompt, 1)[0] for _ in range(grid.repeats))
            calls = [run(batch, prompt, grid.gen_new_tokens) for _ in range(grid.repeats)]
            total_s, out_tokens = min(calls)
            rows.append(
                {
                    "batch": batch,
                    "prompt_tokens": prompt,
                    "max_new_tokens": grid.gen_new_tokens,
                    "out_tokens": out_tokens,
                    "prefill_s": prefill_s,
                    "total_s": total_s,
                }
            )
            bar.update(1)
    return rows


def measure_scoring(backend, stream: TokenStream, grid: MeasureGrid, adapter: str | None, bar) -> list[dict]:
    from ..inference import ScoreRequest

    def run(batch: int, prompt: int) -> float:
        requests = [
            ScoreRequest(tuple(stream.take(prompt)), tuple(stream.take(grid.score_answer)), adapter)
            for _ in range(batch)
        ]
        started = time.perf_counter()
        backend.score(requests)
        return time.perf_counter() - started

    run(1, min(grid.score_prompts))  # warm-up
    rows = []
    for prompt in grid.score_prompts:
        for batch in grid.score_batches:
            if hasattr(backend, "batch_size"):
                backend.batch_size = batch
            rows.append(
                {
                    "batch": batch,
                    "prompt_tokens": prompt,
                    "answer_tokens": grid.score_answer,
                    "seconds": min(run(batch, prompt) for _ in range(grid.repeats)),
                }
            )
            bar.update(1)
    return rows


# ---------------------------------------------------------------- the fit


def fit_cost_model(
    measured: dict[str, Any], *, label: str, device_name: str, date: str, params: int | None, settings: dict[str, Any]
) -> CostModel:
    """Least-squares fits of every stage from the raw measurements of ``measure_profile``."""
    train = [r for r in measured["train"] if "median_s" in r]
    if not train:
        raise ProfilingError(f"{label}: no training length could be measured (out of memory at the shortest?)")
    fits = {
        "train_step_s": fit_terms(
            [{"T": r["tokens"]} for r in train], [r["median_s"] for r in train], STAGE_TERMS["train_step_s"]
        )
    }
    with_memory = [r for r in train if "peak_memory_bytes" in r]
    if with_memory:
        fits["train_memory_bytes"] = fit_terms(
            [{"T": r["tokens"]} for r in with_memory],
            [float(r["peak_memory_bytes"]) for r in with_memory],
            STAGE_TERMS["train_memory_bytes"],
        )
    gen = measured["generate"]
    fits["prefill_s"] = fit_terms(
        [{"B": r["batch"], "P": r["prompt_tokens"]} for r in gen],
        [r["prefill_s"] for r in gen],
        STAGE_TERMS["prefill_s"],
    )
    decode = [r for r in gen if r["out_tokens"] > 1 and r["total_s"] > r["prefill_s"]]
    if not decode:
        raise ProfilingError(f"{label}: every generation stopped after one token; decode time cannot be measured")
    fits["decode_step_s"] = fit_terms(
        [{"B": r["batch"], "C": r["prompt_tokens"] + r["out_tokens"] / 2} for r in decode],
        [(r["total_s"] - r["prefill_s"]) / (r["out_tokens"] - 1) for r in decode],
        STAGE_TERMS["decode_step_s"],
    )
    score = measured["score"]
    fits["score_s"] = fit_terms(
        [{"B": r["batch"], "L": r["prompt_tokens"] + r["answer_tokens"]} for r in score],
        [r["seconds"] for r in score],
        STAGE_TERMS["score_s"],
    )
    batch = max(r["batch"] for r in gen)
    return CostModel(
        label=label,
        source=f"measured on {device_name}, {date[:10]}",
        device=device_name,
        fits=fits,
        load_s=measured["load_s"],
        engine_start_s=measured["engine_start_s"],
        generation_batch=batch,
        params=params,
        measured_ranges={
            "T": max(r["tokens"] for r in train),
            "P": max(r["prompt_tokens"] for r in gen),
            "L": max(r["prompt_tokens"] + r["answer_tokens"] for r in score),
            "B": batch,
        },
        assumptions=[
            (
                f"{label}: measured on {device_name} ({settings['backend']} backend, {settings['precision']}); "
                f"generation and scoring in batches of {batch} (the largest measured; vLLM on a GPU batches more)"
            ),
        ],
        settings=settings,
    )


# ---------------------------------------------------------------- the whole measurement


def _precision_dtype(precision: str) -> str:
    return {"auto": "auto", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]


def measure_profile(
    model: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    *,
    backend: str = "transformers",
    device: str | None = None,
    precision: str = "auto",
    quick: bool = False,
    max_seq_len: int | None = None,
    grid: MeasureGrid | None = None,
    config: Config | None = None,
    notify: Callable[[str], None] = say,
    progress: bool = True,
    label: str | None = None,
) -> dict[str, Any]:
    """Measure ``model`` (a model folder, labelled ``label`` else by its name, or a
    candidate name: random weights of its full shape) on this machine; write
    ``out_path`` (profile.json) when given and return its contents. The profiler's mode
    on Kaggle (``on_kaggle.py``) calls this."""
    torch_device = _measuring_device(backend, precision, device)
    config = _measuring_config(config, backend, precision)
    label, cfg, candidate = model_config(model, label)
    check_measurable(model)
    work = Path(tempfile.mkdtemp(prefix="arcsub-profile-"))
    try:
        if candidate is not None:
            notify(f"building a random-weight {candidate.name} of its full published shape")
            path = build_full_shape(candidate, work / "model")
        else:
            path = model_folder(model)
        window = model_window(path)
        limit = min(window, max_seq_len or window)
        grid = (grid or (MeasureGrid.quick() if quick else MeasureGrid())).capped(limit)
        longest = max(max(grid.gen_prompts) + grid.gen_new_tokens, max(grid.score_prompts) + grid.score_answer)
        config.inference = replace(config.inference, max_model_len=min(window, longest + 64))
        shape = cfg if candidate is not None else read_config(path)
        shape = {k: v for k, v in shape.items() if k != "quantization_config"}
        notify(
            f"profiling {label} on {torch_device.type} ({backend} backend, precision {precision}): "
            f"{grid.points()} points"
        )
        with progress_bar(total=grid.points() + 2, desc="profile", unit="point", enabled=progress) as bar:
            vocab = cfg.get("vocab_size")
            measured = _measure_model(path, config, grid, torch_device, vocab, work / "adapter", bar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = machine_facts(torch_device)
    settings = {
        "backend": backend,
        "device": torch_device.type,
        "precision": measured["train"][0].get("precision", precision) if measured["train"] else precision,
        "lora_rank": config.finetune.lora_rank,
        "target_modules": list(config.finetune.target_modules),
        "quick": quick,
        "grid": asdict(grid),
    }
    params = facts.count_parameters(shape)
    cost = fit_cost_model(
        measured, label=label, device_name=machine["device_name"], date=machine["date"], params=params,
        settings=settings,
    )  # fmt: skip
    profile = {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "label": label,
            "path": str(model),
            "params": params,
            "random_weights": candidate is not None,
            "window": window,
            "config": shape,  # the shape, for `arcsub profile fit`
        },
        "machine": machine,
        "settings": settings,
        "measured": measured,
        "cost_model": cost.to_dict(),
    }
    if out_path is not None:
        write_json_atomic(out_path, profile, indent=1)
    return profile


def _measuring_device(backend: str, precision: str, device: str | None):
    """The torch device to measure on, the options checked first."""
    import torch

    if backend not in ("transformers", "vllm"):
        raise ProfilingError(f"`backend` {backend!r}: use transformers or vllm")
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ProfilingError(f"`precision` {precision!r}: use auto, fp32, fp16 or bf16")
    if device not in (None, "cpu", "cuda"):
        raise ProfilingError(f"`device` {device!r}: use cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ProfilingError("`device` cuda: no CUDA device here; use `device` cpu")
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _measuring_config(config: Config | None, backend: str, precision: str) -> Config:
    """A copy of ``config``'s prompt, augment, finetune and inference sections (the
    defaults without one), with the backend and precision to measure."""
    config = Config(
        **{k: replace(getattr(config or Config(), k)) for k in ("prompt", "augment", "finetune", "inference")}
    )
    config.finetune = replace(config.finetune, precision=precision)
    config.inference = replace(config.inference, backend=backend, dtype=_precision_dtype(precision))
    return config


def _measure_model(path, config: Config, grid: MeasureGrid, torch_device, vocab: int | None, adapter_dir: Path, bar):
    """The measurements, in the order the kernel pays them: loading for training, the
    training grid, the engine's start with the trained adapter, generation, scoring."""
    import torch

    from ..finetune import load_for_training, save_adapter
    from ..inference import make_backend

    measured: dict[str, Any] = {}
    _sync(torch_device)
    started = time.perf_counter()
    train_model, tokenizer = load_for_training(path, config, device=torch_device)
    _sync(torch_device)
    measured["load_s"] = time.perf_counter() - started
    bar.update(1)
    stream = TokenStream(tokenizer, vocab or len(tokenizer))
    measured["train"] = measure_training(train_model, config, stream, grid, torch_device, bar)
    adapter = save_adapter(train_model, adapter_dir)
    del train_model
    gc.collect()
    if torch_device.type == "cuda":
        torch.cuda.empty_cache()
    started = time.perf_counter()
    engine = make_backend(path, config, [str(adapter)], device=torch_device.type, progress=False)
    measured["engine_start_s"] = time.perf_counter() - started
    bar.update(1)
    try:
        measured["generate"] = measure_generation(engine, stream, grid, str(adapter), bar)
        measured["score"] = measure_scoring(engine, stream, grid, str(adapter), bar)
    finally:
        engine.close()
    return measured
