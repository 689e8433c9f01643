"""vLLM vs transformers on the AIRV workload (a benchmark, not a test).

For real arc1/evaluation tasks of a few sizes, one task x 8 augmentations, run step 1
(augment, build prompts, generate, parse, invert) with each backend on the embedded
default model:

  greedy   8 augmented prompts, 1 completion each (temperature 0)
  sampled  the same 8 prompts, 8 completions each (temperature 1)

and report wall time, output tokens/s, and the share of wall time spent outside the
engine (augmentation, prompt building and tokenization, parsing, inversion).
Engine start and model load are timed separately and not counted.

    .venv/bin/python bench/inference.py [--tasks ID,ID,...] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import sys
import time

from report import machine_line, replace_section

from arcsub.config import Config
from arcsub.inference.airv import sample
from arcsub.models import resolve_model
from arcsub.models.loading import load_tokenizer
from arcsub.prompts import PromptBuilder
from arcsub.tasks import load_tasks

# small, medium and large prompts (152, 542 and 1072 tokens with the default codec); a
# 2756-token task took 999 s greedy on the transformers backend here, and its sampled
# run (8x the prefill, no prefix sharing) would take hours.
DEFAULT_TASKS = "66e6c45b,bbb1b8b6,dd2401ed"


class TimedBackend:
    """Delegates to a real backend and adds up the time spent inside it."""

    def __init__(self, backend):
        self.backend, self.name = backend, backend.name
        self.engine_seconds = 0.0
        self.output_tokens = 0

    def generate(self, requests):
        start = time.perf_counter()
        out = self.backend.generate(requests)
        self.engine_seconds += time.perf_counter() - start
        self.output_tokens += sum(len(c.token_ids) for outs in out for c in outs)
        return out


def run_workload(backend, builder, task, config) -> dict:
    timed = TimedBackend(backend)
    start = time.perf_counter()
    predictions = sample([task], timed, builder, config, max_seq_len=4096)
    total = time.perf_counter() - start
    parsed = sum(p.grid is not None for preds in predictions[task.id] for p in preds)
    return {
        "wall": total,
        "tokens_per_s": timed.output_tokens / timed.engine_seconds,
        "outside": (total - timed.engine_seconds) / total,
        "tokens": timed.output_tokens,
        "parsed": parsed,
    }


def workloads(seed: int):
    greedy = Config()
    greedy.inference.num_augmentations = 8
    greedy.inference.seed = seed
    sampled = Config()
    sampled.inference.num_augmentations = 8
    sampled.inference.samples_per_prompt = 8
    sampled.inference.temperature = 1.0
    sampled.inference.seed = seed
    return {"greedy 8x1": greedy, "sampled 8x8": sampled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="arc1/evaluation task ids")
    parser.add_argument("--write", help="markdown file whose inference section to replace")
    args = parser.parse_args()

    model_path = resolve_model("default")
    tokenizer = load_tokenizer(model_path)
    builder = PromptBuilder(Config().prompt, tokenizer)
    tasks = load_tasks(f"arc1/evaluation[{args.tasks}]").tasks
    sizes = {t.id: builder.fit(t, with_answer=False).num_tokens for t in tasks}

    from arcsub.config import InferenceConfig
    from arcsub.inference.hf_backend import TransformersBackend
    from arcsub.inference.vllm_backend import VLLMBackend

    results, starts = {}, {}
    for name in ("vllm", "transformers"):
        start = time.perf_counter()
        if name == "vllm":
            backend = VLLMBackend(model_path, InferenceConfig(max_model_len=4096, kv_cache_gib=2.0), progress=False)
        else:
            backend = TransformersBackend(model_path, InferenceConfig(), batch_size=8, progress=False)
        starts[name] = time.perf_counter() - start
        # one warm-up call so neither backend pays first-call costs inside the figures
        run_workload(backend, builder, tasks[0], workloads(99)["greedy 8x1"])
        for task in tasks:
            for label, config in workloads(0).items():
                results[(name, task.id, label)] = run_workload(backend, builder, task, config)
                r = results[(name, task.id, label)]
                print(
                    f"{name:12} {task.id} {label:11} {r['wall']:7.1f}s {r['tokens_per_s']:6.1f} tok/s "
                    f"outside engine {100 * r['outside']:.2f}% parsed {r['parsed']}",
                    file=sys.stderr,
                )
        backend.close()

    rows = [
        "| task (prompt tokens) | workload | vLLM wall s | transformers wall s | speed-up | vLLM out tok/s "
        "| transformers out tok/s | outside engine, vLLM | outside engine, transformers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for label in workloads(0):
            v, h = results[("vllm", task.id, label)], results[("transformers", task.id, label)]
            rows.append(
                f"| {task.id} ({sizes[task.id]}) | {label} | {v['wall']:.1f} | {h['wall']:.1f} | "
                f"{h['wall'] / v['wall']:.2f}x | {v['tokens_per_s']:.0f} | {h['tokens_per_s']:.0f} | "
                f"{100 * v['outside']:.2f}% | {100 * h['outside']:.2f}% |"
            )
    table = "\n".join(rows)
    section = (
        "## Inference: vLLM vs transformers on the AIRV workload\n\n"
        f"`.venv/bin/python bench/inference.py --write docs/benchmarks.md`, run {machine_line()}. "
        "Embedded default model (SmolLM2-135M-Instruct, fp32), one task x 8 augmentations; greedy = 1 "
        "completion per prompt, sampled = 8 per prompt at temperature 1. Wall time covers the whole of "
        "step 1 (augment, prompts, generate, parse, invert); tokens/s counts generated tokens over engine "
        f"time. Start-up, not counted: vLLM engine {starts['vllm']:.0f} s, transformers load "
        f"{starts['transformers']:.0f} s.\n\n{table}"
    )
    print(table)
    if args.write:
        replace_section(args.write, "inference", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
