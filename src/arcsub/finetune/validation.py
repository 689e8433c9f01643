"""The validation loss of an offline run: mean answer loss on held-out tasks.

``ValidationSet.build(tasks, builder, config)`` makes a fixed set of prompts, the ones
inference sees: each test pair with a known output as the question, the task's train
pairs as the examples (dropped to fit the budget like the prompt builder does), no
augmentation; a task without known test outputs asks its last train pair instead.
A prompt that cannot fit is left out and counted.

``evaluate(state)`` runs them without gradients, the model in eval mode and then put
back as it was, and returns the mean of their answer losses. Under ``accelerate``
each process takes every n-th prompt and the sums are all-reduced, so every process
returns the same value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..augment import Augmentation
from ..config import Config
from ..prompts import PromptBuilder, PromptTooLong, TokenizedPrompt
from ..tasks import Task
from .loop import TrainingState, answer_loss


@dataclass
class ValidationSet:
    prompts: list[TokenizedPrompt]
    task_ids: list[str]
    too_long: list[str] = field(default_factory=list)  # "task_id test N" left out

    @classmethod
    def build(cls, tasks: Sequence[Task], builder: PromptBuilder, config: Config) -> ValidationSet:
        budget = config.finetune.max_seq_len or config.prompt.max_seq_len
        prompts, too_long = [], []
        for task in tasks:
            for question, index in _questions(task):
                try:
                    prompt = builder.fit(question, index, Augmentation(), max_seq_len=budget)
                except PromptTooLong:
                    too_long.append(f"{task.id} test {index}")
                    continue
                prompts.append(builder.tokenize(prompt))
        return cls(prompts, [t.id for t in tasks], too_long)

    def __len__(self) -> int:
        return len(self.prompts)

    def evaluate(self, state: TrainingState) -> float:
        import torch

        model, accelerator = state.model, state.accelerator
        rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                losses = [
                    float(answer_loss(model, p, state.device, state.precision, logits_to_keep=state.keep_logits))
                    for p in self.prompts[rank::world]
                ]
        finally:
            model.train(was_training)
        totals = torch.tensor([sum(losses), float(len(losses))], dtype=torch.float64, device=state.device)
        if world > 1:
            totals = accelerator.reduce(totals, "sum")
        return float(totals[0] / totals[1])


def _questions(task: Task) -> list[tuple[Task, int]]:
    known = [i for i, pair in enumerate(task.test) if pair.output is not None]
    if known:
        return [(task, i) for i in known]
    return [(Task(task.id, task.train[:-1], task.train[-1:]), 0)] if len(task.train) > 1 else []
