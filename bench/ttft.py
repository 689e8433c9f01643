"""Fine-tuning engine benchmark (measured, never asserted).

1. Engine overhead: training tokens/s of ``arcsub.finetune.train_examples`` against a
   bare peft loop (forward with labels, backward, AdamW step) on the same sequences,
   and against the same bare loop computing logits only where the loss needs them
   (what the engine does), so the engine's own cost is separated from its saving.
2. Step time against sequence length (256 ... 4096 tokens) for the engine and the bare loop.

Sequences are real ARC leave-one-out prompts (arc1/evaluation) tokenized by the prompt
builder, with the answer (labels) at the end; shorter prompts are lengthened by
prepending other prompts' tokens (no loss), longer ones cut from the left, so every
sequence has exactly the length asked and a real answer.

    nice -n 10 .venv/bin/python bench/ttft.py                     # the full run
    nice -n 10 .venv/bin/python bench/ttft.py --lengths 256,512 --steps 1 --compare-steps 2   # a quick check

Prints markdown tables with the machine and date, ready for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="model folder or 'default'")
    p.add_argument("--lengths", default="256,512,1024,2048,4096", help="sequence lengths for the step-time table")
    p.add_argument("--steps", type=int, default=3, help="timed steps per length and loop (after one warm-up step)")
    p.add_argument("--compare-length", type=int, default=512, help="sequence length for the overhead comparison")
    p.add_argument("--compare-steps", type=int, default=8, help="timed steps per loop and round in the comparison")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the comparison (loops interleaved; medians)")
    p.add_argument("--rank", type=int, default=32, help="LoRA rank (all linear layers)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return p.parse_args()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu}), {mem:.0f} GB RAM, load average {load:.1f} at start"


def build_sequences(tokenizer, config, length: int, count: int, seed: int = 0):
    """``count`` TokenizedPrompts of exactly ``length`` tokens with a real answer at the end."""
    from arcsub.augment import random_augmentation
    from arcsub.prompts import IGNORE_INDEX, PromptBuilder, TokenizedPrompt
    from arcsub.tasks import Task, load_tasks

    builder = PromptBuilder(config.prompt, tokenizer)
    tasks = load_tasks("arc1/evaluation[:40]").tasks
    rng = random.Random(seed)
    sequences = []
    while len(sequences) < count:
        task = rng.choice(tasks)
        q = rng.randrange(len(task.train))
        loo = Task(task.id, task.train[:q] + task.train[q + 1 :], (task.train[q],))
        aug = random_augmentation(rng, len(loo.train))
        example = builder.tokenize(builder.fit(loo, 0, aug, max_seq_len=100_000))
        ids, labels = list(example.input_ids), list(example.labels)
        while len(ids) < length:  # prepend another prompt's tokens, without loss
            filler = rng.choice(tasks)
            extra = builder.tokenize(builder.build(filler, 0, with_answer=False)).input_ids
            ids, labels = extra + ids, [IGNORE_INDEX] * len(extra) + labels
        ids, labels = ids[-length:], labels[-length:]
        prompt_length = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        sequences.append(TokenizedPrompt(ids, labels, prompt_length))
    return sequences


def bare_loop(model, sequences, *, answer_logits_only: bool) -> float:
    """Seconds for a plain peft training loop over ``sequences`` (batch 1, fp32)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    start = time.perf_counter()
    for seq in sequences:
        ids = torch.tensor([seq.input_ids])
        labels = torch.tensor([seq.labels])
        if answer_logits_only:
            first = seq.prompt_length
            logits = model(input_ids=ids, logits_to_keep=len(seq.input_ids) - first + 1).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[0, first:], ignore_index=-100)
        else:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def engine_loop(model, sequences, config) -> float:
    from arcsub.finetune import train_examples

    start = time.perf_counter()
    result = train_examples(model, sequences, config, max_steps=len(sequences), progress=False)
    elapsed = time.perf_counter() - start
    assert result.steps == len(sequences), result.summary()
    return elapsed


def main() -> int:
    args = parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from arcsub.config import Config, FinetuneConfig
    from arcsub.finetune import attach_lora
    from arcsub.models import resolve_model
    from arcsub.models.loading import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = Config()
    config.finetune = FinetuneConfig(
        lora_rank=args.rank, lora_alpha=args.rank, learning_rate=1e-5, warmup_steps=0, log_every=10**6
    )
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), config.finetune)
    header = [
        f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        f"date: {subprocess.run(['date'], capture_output=True, text=True).stdout.strip()}",
        f"model: {path.name}, fp32, LoRA r={args.rank} on all linear layers, batch 1",
    ]
    print("\n".join(header), flush=True)

    # 1. overhead, loops interleaved over rounds so load changes hit all of them alike
    seqs = build_sequences(tokenizer, config, args.compare_length, args.compare_steps + 1, seed=1)
    loops = {
        "engine (train_examples)": lambda s: engine_loop(model, s, config.finetune),
        "bare peft loop, full logits": lambda s: bare_loop(model, s, answer_logits_only=False),
        "bare peft loop, answer logits only": lambda s: bare_loop(model, s, answer_logits_only=True),
    }
    for run in loops.values():
        run(seqs[:1])  # warm-up
    times = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, run in loops.items():
            times[name].append(run(seqs[1:]))
    tokens = sum(len(s.input_ids) for s in seqs[1:])
    base = statistics.median(times["bare peft loop, answer logits only"])
    print(f"\n{args.rounds} rounds x {args.compare_steps} steps of {args.compare_length} tokens (median per round):\n")
    print("| loop | s/step | tokens/s | time vs bare loop, answer logits only |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        change = 100 * (median / base - 1)
        print(f"| {name} | {median / args.compare_steps:.3f} | {tokens / median:.0f} | {change:+.1f}% |")

    # 2. step time vs length
    print(f"\nstep time vs sequence length (mean of {args.steps} step(s) after a warm-up step):\n")
    print("| tokens | engine s/step | engine tokens/s | bare (full logits) s/step |")
    print("|---|---|---|---|")
    for length in [int(x) for x in args.lengths.split(",")]:
        seqs = build_sequences(tokenizer, config, length, args.steps + 1, seed=length)
        engine_loop(model, seqs[:1], config.finetune)
        e = engine_loop(model, seqs[1:], config.finetune) / args.steps
        bare_loop(model, seqs[:1], answer_logits_only=False)
        b = bare_loop(model, seqs[1:], answer_logits_only=False) / args.steps
        print(f"| {length} | {e:.2f} | {length / e:.0f} | {b:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
