"""Several training sequences in one forward pass (``finetune.tokens_per_step``).

A small model's step is dominated by fixed costs (kernel launches, Python, the
optimizer) that do not grow with the tokens it processes; putting several of a task's
leave-one-out prompts through one forward pass spends them once for all.

* ``StepDraw``: the sequences of one step: drawn one at a time until the next would
  pass ``tokens_per_step`` (at least one per step); the one that did not fit opens the
  next step, so no drawn sequence is wasted and the draw stays reproducible.
* ``batch_loss``: the mean over the sequences of each one's mean cross-entropy on its
  labelled tokens: exactly the loss (and so the gradients) of the same sequences run
  one by one with gradient accumulation. Two layouts:

  - ``packed``: one row, position ids restarting at every sequence, no attention mask
    and no cache (``use_cache=False``: with a cache transformers skips the detection),
    which transformers' masks read as packed sequences (a block-diagonal causal mask for
    sdpa and eager, variable-length kernels for FlashAttention): no padding, no
    attention across sequences. Logits are computed at the labelled positions only.
  - ``padded``: one row per sequence, right-padded to the longest, with an attention
    mask: for models whose attention does not separate packed sequences.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from ..errors import FinetuneError
from ..prompts import IGNORE_INDEX, TokenizedPrompt

# transformers' attention implementations whose masks keep packed sequences apart
PACKING_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


class StepDraw:
    """The sequences of each step (see the module docstring). ``draw(i)`` is the i-th
    sequence of the run; ``drawn`` counts those taken, the carried one included."""

    def __init__(self, draw: Callable[[int], TokenizedPrompt], tokens_per_step: int, drawn: int = 0):
        self.draw, self.budget, self.drawn = draw, tokens_per_step, drawn
        self.carry: TokenizedPrompt | None = None

    def next_step(self) -> list[TokenizedPrompt]:
        step = [self.carry] if self.carry is not None else [self._take()]
        self.carry = None
        tokens = len(step[0].input_ids)
        while True:
            candidate = self._take()
            if tokens + len(candidate.input_ids) > self.budget:
                self.carry = candidate
                return step
            step.append(candidate)
            tokens += len(candidate.input_ids)

    def _take(self) -> TokenizedPrompt:
        example = self.draw(self.drawn)
        self.drawn += 1
        return example


def packing_layout(model, requested: str) -> str:
    """``packed`` or ``padded`` for ``model`` (``auto``: packed where the attention
    implementation builds its mask through transformers' packed-sequence detection)."""
    if requested != "auto":
        return requested
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    implementation = getattr(base.config, "_attn_implementation", None)
    module = sys.modules.get(type(base).__module__)
    uses_masks = module is not None and hasattr(module, "create_causal_mask")
    return "packed" if implementation in PACKING_ATTENTION and uses_masks else "padded"


def _labelled(example: TokenizedPrompt) -> list[int]:
    positions = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX and i > 0]
    if not positions:
        raise FinetuneError("a training example has no labelled token after the first; its loss would be empty")
    return positions


def batch_loss(
    model,
    examples: Sequence[TokenizedPrompt],
    device,
    precision,
    layout: str,
    *,
    logits_to_keep=True,
    pad_to: int | None = None,
):
    """The mean over ``examples`` of each one's mean loss on its labelled tokens, from
    one forward pass (``layout``: packed or padded); returns (loss, per-sequence losses).
    ``pad_to``: a packed row and its kept logits are padded to multiples of this (a
    filler sequence with no labels, sharing no attention), so compiled shapes repeat."""
    import torch
    import torch.nn.functional as F

    autocast = (
        torch.autocast(device.type, dtype=precision.autocast_dtype) if precision.autocast_dtype else nullcontext()
    )
    rows = _packed(examples, pad_to) if layout == "packed" else _padded(examples)
    inputs, keep, targets, owner = (torch.tensor(v, device=device) for v in rows[:4])
    extra = {k: torch.tensor(v, device=device) for k, v in rows[4].items()}
    with autocast:
        if logits_to_keep and layout == "packed":
            logits = model(input_ids=inputs, logits_to_keep=keep[1], use_cache=False, **extra).logits[0]
        else:
            logits = model(input_ids=inputs, use_cache=False, **extra).logits[keep[0], keep[1]]
    token_losses = F.cross_entropy(logits.float(), targets, reduction="none", ignore_index=IGNORE_INDEX)
    count = len(examples) + 1  # the last bin holds the filler's kept positions (no loss)
    sums = torch.zeros(count, device=device).index_add_(0, owner, token_losses)
    per_sequence = (sums / torch.bincount(owner, minlength=count).clamp(min=1))[:-1]
    return per_sequence.mean(), per_sequence


def _packed(examples: Sequence[TokenizedPrompt], pad_to: int | None = None):
    """One row: ids, (row, position) of each logit kept, targets, owner, position ids."""
    ids, positions, keep, targets, owner = [], [], [], [], []
    for index, example in enumerate(examples):
        offset = len(ids)
        labelled = _labelled(example)
        ids += example.input_ids
        positions += range(len(example.input_ids))
        keep += [offset + i - 1 for i in labelled]  # the logit at i-1 predicts token i
        targets += [example.labels[i] for i in labelled]
        owner += [index] * len(labelled)
    if pad_to:
        filler = -len(ids) % pad_to
        ids += [0] * filler
        positions += range(filler)  # a sequence of its own: no attention to or from the others
        extra = -len(keep) % pad_to
        keep += [0] * extra
        targets += [IGNORE_INDEX] * extra
        owner += [len(examples)] * extra
    return [ids], [[0] * len(keep), keep], targets, owner, {"position_ids": [positions]}


def _padded(examples: Sequence[TokenizedPrompt]):
    """One right-padded row per example, with the attention mask."""
    width = max(len(e.input_ids) for e in examples)
    ids, mask, rows, columns, targets, owner = [], [], [], [], [], []
    for index, example in enumerate(examples):
        n = len(example.input_ids)
        ids.append(example.input_ids + [0] * (width - n))
        mask.append([1] * n + [0] * (width - n))
        labelled = _labelled(example)
        rows += [index] * len(labelled)
        columns += [i - 1 for i in labelled]
        targets += [example.labels[i] for i in labelled]
        owner += [index] * len(labelled)
    return ids, [rows, columns], targets, owner, {"attention_mask": mask}
