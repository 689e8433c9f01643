"""What an offline run trains and validates on: the sources loaded, the validation
tasks split off (``sources.py``), and the training prompts drawn from them, on the
fly (``mixture.MixedPrompts``) or from the tokenized cache (``cache.CachedPrompts``,
with ``finetune.variants``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import FinetuneError
from ..prompts import PromptBuilder
from ..tasks import Task
from .cache import CachedPrompts, open_cache
from .data import LeaveOneOut
from .mixture import MixedPrompts, Mixture
from .sources import Source, draw_held_out, drop_repeated, hold_out, load_sources, parse_sources

log = logging.getLogger("arcsub.finetune")


@dataclass
class Corpus:
    sources: list[Source]  # training sources, the validation and excluded tasks left out
    validation: list[Task]  # held-out tasks (from --val-tasks, then --val-data)
    left_out: int  # training tasks left out because they are validation tasks (or copies)
    where: str  # the flag or key that named the training sources, for errors
    excluded: list[Source] = field(default_factory=list)  # never trained on (finetune.exclude_sources)
    left_out_excluded: int = 0  # training tasks left out because they are excluded tasks (or copies)
    repeated: int = 0  # training tasks left out because an earlier source holds the same id

    def describe(self) -> dict:
        return {
            "sources": [{"source": str(s.spec), "weight": s.spec.weight, "tasks": len(s.tasks)} for s in self.sources],
            "held_out": sorted(t.id for t in self.validation),
            "left_out_of_training": self.left_out,
            "excluded": [{"source": s.spec.source, "tasks": len(s.tasks)} for s in self.excluded],
            "left_out_as_excluded": self.left_out_excluded,
            "left_out_as_repeated": self.repeated,
        }


def load_corpus(
    data: Sequence[str],
    val_data: Sequence[str],
    config: Config,
    *,
    where: str = "--data",
    val_where: str = "--val-data",
    exclude: Sequence[str] = (),
    exclude_where: str = "finetune.exclude_sources",
    skip_invalid: bool = False,
) -> Corpus:
    """Load the training and validation sources; leave out of training the tasks an
    earlier source already holds (by id), the excluded tasks and the validation tasks
    (by id, and copies under other ids as the leakage guard sees them)."""
    if not data:
        raise FinetuneError(f"{where} is required: a task source such as arc1/training (SOURCE@WEIGHT to mix)")
    sources, repeated = drop_repeated(load_sources(parse_sources(data, where), where, skip_invalid=skip_invalid), where)
    excluded = load_sources(parse_sources(exclude, exclude_where), exclude_where, skip_invalid=skip_invalid)
    left_out_excluded = 0
    if excluded:
        sources, left_out_excluded = hold_out(sources, [t for s in excluded for t in s.tasks], where)
    extra = load_sources(parse_sources(val_data, val_where), val_where, skip_invalid=skip_invalid)
    validation = draw_held_out(sources, config.finetune.val_tasks, config.finetune.seed)
    chosen = {t.id for t in validation}
    for task in (t for s in extra for t in s.tasks):
        if task.id not in chosen:
            chosen.add(task.id)
            validation.append(task)
    left_out = 0
    if validation:
        sources, left_out = hold_out(sources, validation, where)
    return Corpus(sources, validation, left_out, where, excluded, left_out_excluded, repeated)


def training_prompts(
    corpus: Corpus,
    config: Config,
    builder: PromptBuilder,
    *,
    cache_dir: Path | None = None,
    accelerator=None,
    progress: bool = True,
) -> tuple[object, dict]:
    """The loop's example callable and a description of it for ``run.json``."""
    budget = config.finetune.max_seq_len or config.prompt.max_seq_len
    weights = [s.spec.weight for s in corpus.sources]

    def sampler(source: Source) -> LeaveOneOut:
        made = LeaveOneOut(source.tasks, builder, config)
        if not len(made):
            raise FinetuneError(
                f"{corpus.where} {source.spec}: no task has a leave-one-out prompt within {budget} tokens; "
                "raise finetune.max_seq_len"
            )
        return made

    if not config.finetune.variants:
        samplers = [sampler(source) for source in corpus.sources]
        examples = MixedPrompts(Mixture(weights, [s.task_ids for s in samplers]), samplers)
        skipped = [len(s.skipped) for s in samplers]
        return examples, _describe(corpus, [len(s) for s in samplers], skipped, None)
    # One process builds the cache; the others wait for it, then open the same folder.
    first = accelerator.main_process_first() if accelerator is not None else nullcontext()
    with first:
        cache = open_cache(
            corpus.sources, sampler, config, builder.tokenizer, budget, cache_dir,
            progress=progress and (accelerator is None or accelerator.is_main_process),
        )  # fmt: skip
    entries = cache.meta["sources"]
    described = _describe(corpus, [len(e["tasks"]) for e in entries], [len(e["skipped"]) for e in entries], cache)
    return CachedPrompts(cache, weights), described


def _describe(corpus: Corpus, trained: list[int], skipped: list[int], cache) -> dict:
    described = corpus.describe()
    for entry, n, k in zip(described["sources"], trained, skipped):
        entry |= {"tasks_with_prompts": n, "skipped_too_long": k}
    described["cache"] = cache.describe() if cache is not None else None
    return described
