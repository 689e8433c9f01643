"""Training data for the fine-tuning engine: leave-one-out prompts from ARC tasks.

``LeaveOneOut(tasks, builder, config)`` is a callable ``(micro_step, rng) ->
TokenizedPrompt`` for ``arcsub.finetune.loop.train_examples``. Each call picks a task
(uniformly, when there are several: the shared-adapter mode), and ``draw(task_id,
rng)`` makes its prompt: one of its pairs as the question and the others as the
examples (``finetune.pairs_per_prompt`` of them drawn at random when set), a fresh
random augmentation (dihedral transform, colour permutation, example order; switches
from ``config.augment``), fitted to the sequence budget by dropping examples the way
the prompt builder does, and tokenized with labels on the answer only (or on every
output with ``finetune.learn_outputs``). Labels come from the builder's character
offsets, never from searching token ids. Offline runs mix several sources by weight
over ``draw`` (``mixture.py``).

The pool of pairs is the task's train pairs, plus its test pairs when their outputs
are known and ``finetune.use_test_outputs`` is set (offline data only: at Kaggle the
test outputs are unknown, and in a local evaluation using them would leak answers).

Before training, every question is checked once: its smallest prompt (the
``prompt.min_train_pairs`` smallest other pairs, no augmentation) must fit. Questions
that cannot fit are never drawn; a task with no question that fits is left out and
its reason recorded in ``skipped`` (and logged), never raised. When a drawn
augmentation makes a prompt too long (a transpose turns wide grids tall, which costs
newline tokens) another is drawn, and after a few tries the smallest prompt is used.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..augment import Augmentation, random_augmentation
from ..config import Config
from ..errors import ConfigError
from ..prompts import PromptBuilder, PromptTooLong, TokenizedPrompt
from ..tasks import Pair, Task

log = logging.getLogger("arcsub.finetune")

DRAWS_BEFORE_FALLBACK = 4


@dataclass(frozen=True)
class _Question:
    task: Task  # the others as train pairs, the question as the one test pair
    smallest: tuple[int, ...]  # train indices of the smallest prompt that fits


class LeaveOneOut:
    """Leave-one-out training prompts over one task or a group (see module docstring)."""

    def __init__(self, tasks: Sequence[Task], builder: PromptBuilder, config: Config):
        self.builder = builder
        self.augment = config.augment
        self.learn_outputs = config.finetune.learn_outputs
        self.max_seq_len = config.finetune.max_seq_len or config.prompt.max_seq_len
        self.min_pairs = config.prompt.min_train_pairs
        self.use_test_outputs = config.finetune.use_test_outputs
        self.pairs_per_prompt = config.finetune.pairs_per_prompt
        if self.pairs_per_prompt and self.pairs_per_prompt < self.min_pairs:
            raise ConfigError(
                f"finetune.pairs_per_prompt = {self.pairs_per_prompt} is below prompt.min_train_pairs = "
                f"{self.min_pairs}; raise it, or set 0 to show every pair that fits"
            )
        self.questions: dict[str, list[_Question]] = {}
        self.skipped: dict[str, str] = {}
        for task in tasks:
            questions, reason = self._questions(task)
            if questions:
                self.questions[task.id] = questions
            else:
                self.skipped[task.id] = reason
                log.info("task %s: skipped: %s", task.id, reason)
        self._task_ids = list(self.questions)

    @property
    def task_ids(self) -> list[str]:
        """Tasks with at least one question that fits."""
        return list(self._task_ids)

    def __len__(self) -> int:
        return len(self._task_ids)

    def pool(self, task: Task) -> list[Pair]:
        pairs = list(task.train)
        if self.use_test_outputs:
            pairs += [p for p in task.test if p.output is not None]
        return pairs

    def _questions(self, task: Task) -> tuple[list[_Question], str]:
        pool = self.pool(task)
        if len(pool) < 2:
            return [], f"has {len(pool)} pair with a known output; leave-one-out needs at least 2"
        questions, smallest_tokens = [], None
        for q, question in enumerate(pool):
            others = pool[:q] + pool[q + 1 :]
            loo = Task(task.id, tuple(others), (question,))
            by_size = sorted(range(len(others)), key=lambda i: others[i].cells)
            keep = tuple(sorted(by_size[: self.min_pairs]))
            prompt = self.builder.build(loo, 0, Augmentation(), keep=list(keep))
            tokens = self.builder.count_tokens(prompt.text)
            smallest_tokens = tokens if smallest_tokens is None else min(smallest_tokens, tokens)
            if tokens <= self.max_seq_len:
                questions.append(_Question(loo, keep))
        reason = (
            f"its smallest leave-one-out prompt needs {smallest_tokens} tokens, over the budget of "
            f"{self.max_seq_len}; raise finetune.max_seq_len"
        )
        return questions, reason

    def __call__(self, micro_step: int, rng: random.Random) -> TokenizedPrompt:
        if not self._task_ids:
            raise ValueError("no task has a prompt that fits; check .skipped before training")
        task_id = self._task_ids[rng.randrange(len(self._task_ids))] if len(self._task_ids) > 1 else self._task_ids[0]
        return self.draw(task_id, rng)

    def draw(self, task_id: str, rng: random.Random) -> TokenizedPrompt:
        """A fresh prompt of ``task_id``: question, examples and augmentation from ``rng``."""
        questions = self.questions[task_id]
        for _ in range(DRAWS_BEFORE_FALLBACK):
            question = self._examples_drawn(questions[rng.randrange(len(questions))].task, rng)
            augmentation = random_augmentation(
                rng,
                len(question.train),
                keep_background=self.augment.keep_background,
                permute_colors=self.augment.permute_colors,
                shuffle_order=self.augment.shuffle_order,
            )
            try:
                prompt = self.builder.fit(question, 0, augmentation, max_seq_len=self.max_seq_len)
            except PromptTooLong:
                continue
            return self.builder.tokenize(prompt, learn_outputs=self.learn_outputs)
        question = questions[rng.randrange(len(questions))]
        prompt = self.builder.build(question.task, 0, Augmentation(), keep=list(question.smallest))
        return self.builder.tokenize(prompt, learn_outputs=self.learn_outputs)

    def _examples_drawn(self, task: Task, rng: random.Random) -> Task:
        """``task`` with ``pairs_per_prompt`` of its examples, drawn at random (in order)."""
        if not self.pairs_per_prompt or len(task.train) <= self.pairs_per_prompt:
            return task
        keep = sorted(rng.sample(range(len(task.train)), self.pairs_per_prompt))
        return task.with_train([task.train[i] for i in keep])
