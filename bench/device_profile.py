"""TTFT step time, peak memory and generation throughput of the candidates on a GPU
(measured, never asserted): the device check of issue 9.

For SmolLM2-135M-Instruct and Qwen2.5-0.5B-Instruct, each as a random-weight model of
its FULL published shape (costs do not depend on weight values; nothing is
downloaded), ``arcsub.profile.measure_profile`` measures with the transformers backend
(no vLLM needed) in forced fp16 (autocast + gradient scaler, as on a T4): model load,
TTFT steps (LoRA as configured, r=32 on all linear layers) at 2k, 4k and 8k tokens with
the peak GPU memory of each, generation against batch size and prompt length, and
scoring. Each model's ``profile.json`` goes to ``$OUT`` (default ``./out``), and a table
(with the analytic estimate for the same device beside the measured step time, and
whether each step's memory fits a 15 GB T4) is printed and written to
``$OUT/summary.md``.

    # on the GPU machine (torch, transformers, peft; no vLLM, no network), from the repo root:
    PYTHONPATH=src python bench/device_profile.py
    # proving it here first (CPU, tiny lengths):
    PYTHONPATH=src .venv/bin/python bench/device_profile.py --device cpu --quick

``arcsub profile plan --from $OUT/<model>.profile.json`` projects a hidden-set run from
either file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from arcsub.profile import MeasureGrid, measure_profile
from arcsub.profile.analytic import analytic_cost_model
from arcsub.profile.cost_model import ProfilingError, cost_model_from_dict
from arcsub.profile.measure import model_config

MODELS = ("SmolLM2-135M-Instruct", "Qwen2.5-0.5B-Instruct")
T4_MEMORY = 15e9
T4_TRAINING_SHARE = 0.65  # the arc-prize-2024 profile leaves 35% of each GPU to vLLM

GPU_GRID = MeasureGrid(
    train_lengths=(2048, 4096, 8192),
    train_steps=4,
    train_answer=128,
    gen_batches=(1, 8, 32),
    gen_prompts=(1024, 4096),
    gen_new_tokens=64,
    score_batches=(1, 4),
    score_prompts=(1024, 2048),
    score_answer=128,
    repeats=2,
)
CPU_QUICK_GRID = MeasureGrid(
    train_lengths=(64, 128),
    train_steps=2,
    train_answer=16,
    gen_batches=(1, 2),
    gen_prompts=(32, 64),
    gen_new_tokens=4,
    score_batches=(1, 2),
    score_prompts=(32, 64),
    score_answer=8,
    repeats=1,
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny lengths and batches (the CPU proof)")
    p.add_argument("--models", default=",".join(MODELS), help="candidate names, comma-separated")
    p.add_argument("--lengths", help="TTFT lengths, e.g. 2048,4096,8192")
    p.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "fp32", "auto"))
    p.add_argument("--out", default=os.environ.get("OUT") or "out", help="output folder (default $OUT or ./out)")
    return p.parse_args()


def table(rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(map(str, rows[0])) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows[1:]])


def analytic_for(model: str, device_name: str, cores: int):
    """The analytic estimate for the measuring device, when its datasheet is known."""
    _, cfg, _ = model_config(model)
    try:
        if device_name.startswith("CPU"):
            return analytic_cost_model(cfg, label=model, gpu_name="", accelerator="cpu", cpus=cores)
        return analytic_cost_model(cfg, label=model, gpu_name=device_name)
    except ProfilingError:
        return None


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = CPU_QUICK_GRID if args.quick else GPU_GRID
    if args.lengths:
        grid = replace(grid, train_lengths=tuple(int(v) for v in args.lengths.split(",")))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device here; run with --device cpu --quick", file=sys.stderr)
            return 2
    train_rows = [
        ("model", "tokens", "s/step (median)", "tokens/s", "analytic s/step, same device", "peak memory",
         "fits T4 (15 GB / 65% for TTFT)")
    ]  # fmt: skip
    gen_rows = [("model", "batch", "prompt", "new tokens", "prefill s", "total s", "new tokens/s", "s/sequence")]
    head = []
    started = time.time()
    for name in args.models.split(","):
        t0 = time.time()
        profile = measure_profile(
            name, out / f"{name}.profile.json", backend="transformers", device=args.device,
            precision=args.precision, grid=grid, progress=False, notify=lambda m: print(m, flush=True),
        )  # fmt: skip
        machine, measured = profile["machine"], profile["measured"]
        cost = cost_model_from_dict(profile["cost_model"], name)
        analytic = analytic_for(name, machine["device_name"], machine["cores"] or 1)
        head.append(
            f"{name}: {profile['model']['params'] / 1e6:.0f}M parameters, load {measured['load_s']:.1f} s, "
            f"transformers backend start {measured['engine_start_s']:.1f} s, measured in {time.time() - t0:.0f} s"
        )
        for r in measured["train"]:
            if "median_s" not in r:
                train_rows.append((name, r["tokens"], r.get("error", "?"), "", "", "", "no"))
                continue
            memory = r.get("peak_memory_bytes")
            fits = "-" if memory is None else (
                "yes" if memory <= T4_TRAINING_SHARE * T4_MEMORY else "15 GB only" if memory <= T4_MEMORY else "no"
            )  # fmt: skip
            guess = f"{analytic.step_seconds(r['tokens']):.3f}" if analytic else "-"
            train_rows.append(
                (name, r["tokens"], f"{r['median_s']:.3f}", f"{r['tokens'] / r['median_s']:.0f}", guess,
                 "-" if memory is None else f"{memory / 1e9:.2f} GB", fits)
            )  # fmt: skip
        for r in measured["generate"]:
            rate = r["batch"] * r["out_tokens"] / r["total_s"]
            gen_rows.append(
                (name, r["batch"], r["prompt_tokens"], r["out_tokens"], f"{r['prefill_s']:.3f}", f"{r['total_s']:.3f}",
                 f"{rate:.1f}", f"{r['total_s'] / r['batch']:.3f}")
            )  # fmt: skip
        head.append("  fitted: " + "; ".join(f"{k} = {f.formula()}" for k, f in cost.fits.items()))
    m = profile["machine"]
    where = (
        f"{m['device_name']} (driver {m.get('driver')}, CUDA {m.get('cuda')}), torch {m['torch']}, "
        f"transformers {m['transformers']}, {m['date']}; precision {args.precision}"
    )
    text = "\n".join(
        [f"device_profile: {where}; total {time.time() - started:.0f} s", *head, "", table(train_rows), "",
         table(gen_rows)]
    )  # fmt: skip
    print(text)
    (out / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
