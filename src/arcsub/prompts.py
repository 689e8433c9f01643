"""The one prompt builder shared by training and inference.

From a task, a test index and an augmentation it builds chat messages (a short system
prompt; the train pairs and the test input in the user turn; the test output as the
assistant turn), renders them with the tokenizer's chat template, and records where
the answer starts and ends in the rendered text. Loss masks come from those character
offsets via the tokenizer's offset mapping; token ids are never searched for in
context (that search is how a completion-only collator once found no instruction
marker after a chat template was added, and silently masked every example).

Invariants checked on every build:
  * ``text[:answer_start]`` is exactly the template's rendering with a generation
    prompt: the text the model sees at inference;
  * the answer target is the encoded grid plus the end-of-turn marker (so the model
    learns to stop), and no token straddles the prompt/answer boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from .augment import Augmentation
from .config import PromptConfig
from .encoding import get_codec
from .errors import PromptError
from .tasks import Grid, Task

IGNORE_INDEX = -100  # label of tokens that carry no loss


class ChatTokenizer(Protocol):
    """What the builder needs of a Hugging Face (fast) tokenizer."""

    eos_token: str | None
    chat_template: str | None

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


class ChatMLRenderer:
    """ChatML rendering without a tokenizer (``arcsub encode`` without a model, pure
    tests). Same text as the SmolLM2 and Qwen2.5 templates when a system turn is given."""

    eos_token = "<|im_end|>"
    chat_template = "chatml (built in)"

    def apply_chat_template(self, conversation, *, tokenize=False, add_generation_prompt=False, **_):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@dataclass(frozen=True)
class Prompt:
    task_id: str
    test_index: int
    augmentation: str  # key of the augmentation applied (see arcsub.augment)
    text: str  # prompt, then the answer target when the answer is known
    answer_start: int  # text[:answer_start] is the inference prompt
    answer_end: int  # text[answer_start:answer_end] is the answer target (empty when unknown)
    output_spans: tuple[tuple[int, int], ...]  # train output grids, for "learn every output"
    num_train: int  # train pairs shown
    dropped: int  # train pairs left out to fit the budget
    token_ids: tuple[int, ...] | None = None  # of ``text``, when ``fit`` counted them

    @property
    def num_tokens(self) -> int | None:
        return None if self.token_ids is None else len(self.token_ids)

    @property
    def prompt_text(self) -> str:
        return self.text[: self.answer_start]

    @property
    def answer_text(self) -> str:
        return self.text[self.answer_start : self.answer_end]


@dataclass(frozen=True)
class TokenizedPrompt:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX everywhere but the learned spans
    prompt_length: int  # tokens before the answer

    @property
    def num_answer_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels[self.prompt_length :])


class PromptBuilder:
    """Builds, fits and tokenizes prompts for one tokenizer and one prompt config."""

    def __init__(self, config: PromptConfig | None = None, tokenizer: ChatTokenizer | None = None):
        self.config = config or PromptConfig()
        self.codec = get_codec(self.config.codec)
        self.tokenizer = tokenizer
        self.renderer = tokenizer if tokenizer is not None else ChatMLRenderer()
        if not getattr(self.renderer, "chat_template", None):
            raise PromptError(
                "the tokenizer has no chat template; add one with `arcsub model add-chat-template SRC DST`"
            )

    # ------------------------------------------------------------ messages

    def user_content(self, task: Task, test_index: int) -> tuple[str, list[tuple[int, int]]]:
        """The user turn, and the character spans of the train outputs inside it."""
        cfg, parts, spans, pos = self.config, [], [], 0

        def add(text: str) -> tuple[int, int]:
            nonlocal pos
            start = pos
            parts.append(text)
            pos += len(text)
            return start, pos

        for pair in task.train:
            add(f"{cfg.input_label}:\n{self.codec.encode(pair.input)}\n{cfg.output_label}:\n")
            spans.append(add(self.codec.encode(pair.output)))
            add("\n")
        add(f"{cfg.input_label}:\n{self.codec.encode(task.test[test_index].input)}\n{cfg.output_label}:")
        return "".join(parts), spans

    def messages(self, task: Task, test_index: int, answer: Grid | None) -> list[dict[str, str]]:
        content, _ = self.user_content(task, test_index)
        messages = [{"role": "system", "content": self.config.system_prompt}, {"role": "user", "content": content}]
        if answer is not None:
            messages.append({"role": "assistant", "content": self.codec.encode(answer)})
        return messages

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    # ------------------------------------------------------------ build

    def build(
        self,
        task: Task,
        test_index: int = 0,
        augmentation: Augmentation | None = None,
        *,
        with_answer: bool = True,
        keep: list[int] | None = None,
    ) -> Prompt:
        """Render the prompt for ``task.test[test_index]`` under ``augmentation``.

        ``keep`` lists the (augmented) train pairs to show, in order; default all.
        The answer is included when known and ``with_answer`` is set.
        """
        augmentation = augmentation or Augmentation()
        if not 0 <= test_index < len(task.test):
            raise PromptError(f"task {task.id}: no test input {test_index} (it has {len(task.test)})")
        moved = augmentation.apply_task(task)
        all_train = moved.train
        if keep is not None:
            moved = moved.with_train([all_train[i] for i in keep])
        answer = moved.test[test_index].output if with_answer else None

        messages = self.messages(moved, test_index, answer)
        prompt_text = self._render(messages[:2], True)
        if answer is None:
            text, answer_end = prompt_text, len(prompt_text)
        else:
            full = self._render(messages, False)
            answer_text = messages[2]["content"]
            if not full.startswith(prompt_text) or not full[len(prompt_text) :].startswith(answer_text):
                raise PromptError(
                    f"task {task.id}: the chat template does not render the answer right after the generation "
                    "prompt; use a template whose assistant turn starts with the generation prompt (e.g. chatml)"
                )
            answer_end = len(prompt_text) + len(answer_text)
            eos = getattr(self.renderer, "eos_token", None)
            if eos and full[answer_end:].startswith(eos):
                answer_end += len(eos)  # learn to stop
            text = full[:answer_end]

        content, spans = self.user_content(moved, test_index)
        offset = prompt_text.find(content)
        if offset < 0:
            raise PromptError(
                f"task {task.id}: the chat template altered the user turn; its train outputs cannot be located"
            )
        return Prompt(
            task_id=task.id,
            test_index=test_index,
            augmentation=augmentation.key,
            text=text,
            answer_start=len(prompt_text),
            answer_end=answer_end,
            output_spans=tuple((offset + s, offset + e) for s, e in spans),
            num_train=len(moved.train),
            dropped=len(all_train) - len(moved.train),
        )

    # ------------------------------------------------------------ tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model sees it (the template already holds any BOS)."""
        return list(self._require_tokenizer()(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def _require_tokenizer(self) -> ChatTokenizer:
        if self.tokenizer is None:
            raise PromptError("counting tokens needs a tokenizer; pass `tokenizer` MODEL (or 'default')")
        return self.tokenizer

    def fit(
        self,
        task: Task,
        test_index: int = 0,
        augmentation: Augmentation | None = None,
        *,
        with_answer: bool = True,
        reserve_tokens: int = 0,
        max_seq_len: int | None = None,
    ) -> Prompt:
        """Build the prompt, dropping train pairs (``config.drop_order``) until its
        tokens plus ``reserve_tokens`` (room for an unknown answer) fit ``max_seq_len``.
        Raises PromptTooLong when even ``config.min_train_pairs`` pairs do not fit."""
        budget = (max_seq_len or self.config.max_seq_len) - reserve_tokens
        moved_train = (augmentation or Augmentation()).apply_task(task).train
        keep = list(range(len(moved_train)))
        while True:
            prompt = self.build(task, test_index, augmentation, with_answer=with_answer, keep=keep)
            ids = self.encode(prompt.text)
            tokens = len(ids)
            if tokens <= budget:
                return replace(prompt, token_ids=tuple(ids))
            if len(keep) <= self.config.min_train_pairs:
                raise PromptTooLong(task.id, test_index, tokens + reserve_tokens, budget + reserve_tokens)
            keep.remove(self._next_to_drop(keep, moved_train))

    def _next_to_drop(self, keep: list[int], train) -> int:
        order = self.config.drop_order
        if order == "first":
            return keep[0]
        if order == "largest":
            return max(reversed(keep), key=lambda i: train[i].cells)  # ties: the later pair goes first
        return keep[-1]

    def tokenize(self, prompt: Prompt, *, learn_outputs: bool = False) -> TokenizedPrompt:
        """Token ids and labels: labels are IGNORE_INDEX except on the answer target
        (and, with ``learn_outputs``, on every train output), found by offsets."""
        tokenizer = self._require_tokenizer()
        encoded = tokenizer(prompt.text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
        spans = [(prompt.answer_start, prompt.answer_end)] if prompt.answer_end > prompt.answer_start else []
        if learn_outputs:
            spans += list(prompt.output_spans)
        labels = [IGNORE_INDEX] * len(ids)
        for i, (start, end) in enumerate(offsets):
            if start < prompt.answer_start < end:
                raise PromptError(
                    f"task {prompt.task_id}: token {i} straddles the start of the answer; "
                    "the chat template's generation prompt must end on a token boundary"
                )
            if end > start and any(s <= start and end <= e for s, e in spans):
                labels[i] = ids[i]
        prompt_length = next((i for i, (start, _) in enumerate(offsets) if start >= prompt.answer_start), len(ids))
        result = TokenizedPrompt(ids, labels, prompt_length)
        if spans and result.num_answer_tokens == 0:
            raise PromptError(f"task {prompt.task_id}: no token falls inside the answer span; the loss would be empty")
        return result


class PromptTooLong(PromptError):
    def __init__(self, task_id: str, test_index: int, tokens: int, budget: int):
        self.task_id, self.test_index, self.tokens, self.budget = task_id, test_index, tokens, budget
        super().__init__(
            f"task {task_id} test {test_index}: needs {tokens} tokens with the fewest train pairs allowed, "
            f"over the budget of {budget}; raise prompt.max_seq_len or skip the task"
        )
