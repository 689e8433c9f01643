"""Locally generated text: random ARC-like grids and filler prose.

Used as distraction in the context-window experiment and as the training corpus of
the replicas' small tokenizers. Deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import random

from ..encoding import get_codec

_WORDS = (
    "the grid shows a pattern of coloured cells that repeats across rows and columns while a small shape moves "
    "toward the border and every object keeps its colour unless it touches another one of the same size so the "
    "rule may mirror rotate fill extend or count them before the output is drawn on a clean background where "
    "each line holds digits from zero to nine and nothing else is written between the rows of the examples "
    "below which were chosen at random to fill space and carry no meaning for the question at the end"
).split()


def random_grid(rng: random.Random, max_side: int = 8) -> tuple[tuple[int, ...], ...]:
    rows, cols = rng.randint(2, max_side), rng.randint(2, max_side)
    return tuple(tuple(rng.randrange(10) for _ in range(cols)) for _ in range(rows))


def filler_sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def filler_paragraph(rng: random.Random) -> str:
    return " ".join(filler_sentence(rng) for _ in range(rng.randint(2, 5)))


def grid_block(rng: random.Random, codec: str = "minimal") -> str:
    """An input/output pair laid out as in the ARC prompts."""
    encode = get_codec(codec).encode
    return f"input:\n{encode(random_grid(rng))}\noutput:\n{encode(random_grid(rng))}"


def distraction_chunk(rng: random.Random) -> str:
    """One paragraph of prose or one grid pair, ending in a blank line."""
    body = grid_block(rng) if rng.random() < 0.5 else filler_paragraph(rng)
    return body + "\n\n"


def corpus(rng: random.Random, chunks: int = 400) -> list[str]:
    return [distraction_chunk(rng) for _ in range(chunks)]
