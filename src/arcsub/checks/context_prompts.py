"""Synthetic long-context prompts: remember a key from the very beginning.

The system turn (the very beginning of the rendered prompt) holds a 4-digit key and
the exact answer format; the user turn is distraction (random ARC-like grids and
filler prose, generated locally) that pushes the prompt to a target length, then the
question; the assistant turn is the answer sentence "The key is NNNN.". If the model's window covers the prompt the
task is easy; if the key has fallen out of what the model can attend to, it is
impossible.

The prompts of one sample at several lengths share their beginning (same key, same
distraction, fewer chunks for shorter targets), so a scorer can reuse the longest
prompt's KV cache for the shorter ones. Answer spans and loss labels come from the
prompt builder's offset-based :meth:`~arcsub.prompts.PromptBuilder.tokenize`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ..errors import PromptError
from ..models import distraction_chunk
from ..prompts import IGNORE_INDEX, Prompt, PromptBuilder, TokenizedPrompt

KEY_DIGITS = 4


@dataclass(frozen=True)
class ContextSample:
    key: str
    target_tokens: int
    prompt: Prompt
    tokens: TokenizedPrompt  # labels on the answer and its end-of-turn (training)
    answer_length: int  # answer tokens without the end-of-turn (scoring)
    key_positions: tuple[int, ...]  # indices into the answer tokens that hold the key

    @property
    def prompt_tokens(self) -> int:
        return self.tokens.prompt_length

    @property
    def answer_ids(self) -> list[int]:
        start = self.tokens.prompt_length
        return self.tokens.input_ids[start : start + self.answer_length]


def answer_text(key: str) -> str:
    # SmolLM2-135M-Instruct answers recall questions with this sentence unprompted;
    # asking for bare digits would measure its formatting, not its memory.
    return f"The key is {key}."


def messages(key: str, distraction: str) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": f"The key is {key}. Remember it: at the very end you will be asked for the key. "
            f'Answer with one sentence: "The key is" and its {len(key)} digits.',
        },
        {"role": "user", "content": f"{distraction}What is the key?"},
        {"role": "assistant", "content": answer_text(key)},
    ]


def render(builder: PromptBuilder, turns: list[dict[str, str]], prompt_id: str) -> Prompt:
    """A Prompt whose answer is the assistant turn (plus end-of-turn when rendered)."""
    tokenizer = builder.tokenizer
    prompt_text = tokenizer.apply_chat_template(turns[:2], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)
    answer = turns[2]["content"]
    if not full.startswith(prompt_text + answer):
        raise PromptError(
            "the chat template does not render the answer right after the generation prompt; "
            "use a template whose assistant turn starts with the generation prompt (e.g. chatml)"
        )
    end = len(prompt_text) + len(answer)
    eos = tokenizer.eos_token
    if eos and full[end:].startswith(eos):
        end += len(eos)
    return Prompt(
        task_id=prompt_id,
        test_index=0,
        augmentation="id",
        text=full[:end],
        answer_start=len(prompt_text),
        answer_end=end,
        output_spans=(),
        num_train=0,
        dropped=0,
    )


class SampleMaker:
    """Builds one sample's prompts at every target length from a seeded generator."""

    def __init__(self, tokenizer):
        self.builder = PromptBuilder(tokenizer=tokenizer)  # refuses a tokenizer without a chat template
        self.tokenizer = tokenizer

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def make(self, rng: random.Random, lengths: list[int], sample_id: str) -> list[ContextSample]:
        key = "".join(str(rng.randrange(10)) for _ in range(KEY_DIGITS))
        empty = render(self.builder, messages(key, ""), sample_id)
        base = self._count(empty.prompt_text)
        chunks, sizes = [], []
        while base + sum(sizes) < max(lengths):
            chunks.append(distraction_chunk(rng))
            sizes.append(self._count(chunks[-1]))
        samples = []
        for length in sorted(lengths):
            n = self._chunks_for(length, base, sizes)
            while True:
                prompt = render(self.builder, messages(key, "".join(chunks[:n])), f"{sample_id}-{length}")
                tokens = self.builder.tokenize(prompt)
                if tokens.prompt_length <= length or n == 0:
                    break
                n -= 1  # chunk counts are estimates: merges across chunk borders shift them
            samples.append(self._sample(key, length, prompt, tokens))
        return samples

    def _sample(self, key: str, length: int, prompt: Prompt, tokens: TokenizedPrompt) -> ContextSample:
        eos = self.tokenizer.eos_token
        answer_length = tokens.num_answer_tokens - (1 if eos and prompt.text.endswith(eos) else 0)
        # The key's tokens, found by character offsets like every other label.
        key_start = prompt.answer_start + answer_text(key).index(key)
        key_only = replace(prompt, answer_start=key_start, answer_end=key_start + len(key))
        key_labels = self.builder.tokenize(key_only).labels[tokens.prompt_length :]
        positions = tuple(i for i, label in enumerate(key_labels[:answer_length]) if label != IGNORE_INDEX)
        return ContextSample(key, length, prompt, tokens, answer_length, positions)

    @staticmethod
    def _chunks_for(length: int, base: int, sizes: list[int]) -> int:
        total, n = base, 0
        while n < len(sizes) and total + sizes[n] <= length:
            total += sizes[n]
            n += 1
        return n
