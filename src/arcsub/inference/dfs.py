"""Depth-first sampling: every completion whose probability stays above a threshold.

The 2024 ARC winners' search (kept by the 2025 winners): instead of n random samples,
explore the tree of completions and keep each one whose cumulative probability is at
least ``min_prob``. A branch is pruned as soon as its probability falls below the
threshold, since it can only fall further. Probabilities of the kept completions sum
to at most 1, so at most ``1 / min_prob`` of them survive, and a confident model
costs about one greedy decode.

The tree is walked level by level rather than strictly depth first: the set of
completions found is the same, and every live branch advances in one batched forward
pass over a shared KV cache (the prompt is computed once; a branch that splits copies
its parent's cache rows). Log-probabilities come from the raw logits (temperature 1),
as the backends report them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Branch:
    tokens: list[int]
    logprobs: list[float]
    greedy: bool = False  # every token so far was its step's likeliest

    @property
    def total(self) -> float:
        return sum(self.logprobs)


def threshold_search(
    model,
    prompt_ids: tuple[int, ...],
    *,
    min_prob: float,
    max_tokens: int,
    eos_ids: set[int],
    device: str,
    deadline: float | None = None,
    keep_greedy: bool = False,
) -> list[tuple[Branch, bool]]:
    """Every completion of ``prompt_ids`` with probability at least ``min_prob``, most
    likely first, each with whether it ended (an end token) or hit ``max_tokens``;
    ``keep_greedy``: the greedy completion too, however unlikely, so that no prompt
    comes back empty. At ``deadline`` (a ``time.time()`` value) the walk stops with what
    has ended."""
    import torch
    from transformers import DynamicCache

    floor = math.log(min_prob)
    cache = DynamicCache()
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor([list(prompt_ids)], device=device), past_key_values=cache, use_cache=True
        ).logits[:, -1, :]
        live, done = [Branch([], [], greedy=keep_greedy)], []
        for step in range(max_tokens):
            logprobs = logits.float().log_softmax(-1)
            totals = torch.tensor([b.total for b in live], device=device).unsqueeze(1) + logprobs
            keep = totals >= floor
            likeliest = logprobs.argmax(-1).tolist()
            for row, branch in enumerate(live):
                if branch.greedy:
                    keep[row, likeliest[row]] = True
            rows, tokens = torch.nonzero(keep, as_tuple=True)
            parents, next_live, next_tokens = [], [], []
            for row, token in zip(rows.tolist(), tokens.tolist(), strict=True):
                branch = Branch(
                    live[row].tokens + [token],
                    live[row].logprobs + [logprobs[row, token].item()],
                    greedy=live[row].greedy and token == likeliest[row],
                )
                if token in eos_ids:
                    done.append((branch, True))
                else:
                    parents.append(row)
                    next_live.append(branch)
                    next_tokens.append(token)
            live = next_live
            if not live or step == max_tokens - 1:
                break
            if deadline is not None and time.time() > deadline:
                live = []  # unfinished branches are dropped: what ended is kept
                break
            cache.reorder_cache(torch.tensor(parents, device=device))
            logits = model(
                input_ids=torch.tensor(next_tokens, device=device).unsqueeze(1), past_key_values=cache, use_cache=True
            ).logits[:, -1, :]
        done += [(branch, False) for branch in live]  # still going at max_tokens: cut off
    return sorted(done, key=lambda item: -item[0].total)
