"""``arcsub model add-chat-template``: give a model without one a chat template.

Adding a template is more than setting a string. Its markers (``<|im_start|>``,
``<|im_end|>``) must be single special tokens, or they split into pieces whose
tokenization depends on the text around them: that is how a completion-only collator
once searched for the assistant marker's token ids, found none in context, and
silently masked every training example. So the markers are registered as special
tokens when missing, the embeddings grow to hold them (new rows = the mean of the
existing rows, a neutral start), end-of-turn becomes eos, and pad is chosen so it can
never be confused with it.

Nothing is written until :func:`verify_chat_template` passes on a real ARC prompt
built by the one prompt builder: the markers are one token each, the generation
prompt tokenizes to exactly the prefix of the full conversation (inference sees what
training saw), and the answer tokens found by character offsets are exactly the
tokens the answer produces in context, ending in eos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChatTemplateError, ModelPreparationError, PromptError
from ..io import atomic_dir
from ..prompts import IGNORE_INDEX, PromptBuilder
from ..tasks import Pair, Task


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    jinja: str
    markers: tuple[str, ...]
    end_of_turn: str


CHATML = ChatTemplate(
    name="chatml",
    jinja=(
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    markers=("<|im_start|>", "<|im_end|>"),
    end_of_turn="<|im_end|>",
)
TEMPLATES = {CHATML.name: CHATML}

# A small task whose prompt exercises grids, labels and every chat marker.
VERIFY_TASK = Task(
    id="template-check",
    train=(
        Pair(((1, 0), (0, 1)), ((2, 0), (0, 2))),
        Pair(((3, 3, 0),), ((6, 6, 0),)),
    ),
    test=(Pair(((4, 0, 4), (0, 4, 0)), ((8, 0, 8), (0, 8, 0))),),
)


@dataclass
class TemplateCheck:
    prompt_tokens: int
    answer_tokens: int
    answer_text: str
    markers: dict[str, int]  # marker -> its single token id
    adds_bos: str | None  # the token the tokenizer prepends with add_special_tokens=True
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        markers = ", ".join(f"{m}={i}" for m, i in self.markers.items())
        out = [
            f"markers are single tokens: {markers}",
            f"generation prompt: {self.prompt_tokens} tokens, a prefix of the full conversation's tokens",
            f"answer: {self.answer_tokens} tokens found by offsets = the tokens it produces in context, ending in eos",
        ]
        if self.adds_bos:
            out.append(
                f"note: this tokenizer prepends {self.adds_bos} when add_special_tokens=True; arcsub prompts are "
                "tokenized without it, so feed inference engines token ids or add_special_tokens=False"
            )
        return out + self.notes


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ModelPreparationError(f"`template` {name}: unknown; choose one of {', '.join(TEMPLATES)}") from None


def _single_token_id(tokenizer, marker: str) -> int:
    ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ChatTemplateError(
            f"marker {marker} tokenizes into {len(ids)} pieces {pieces}; register it as a special token "
            "(`arcsub model add-chat-template` does) or a loss mask searched by token ids will not find it"
        )
    return ids[0]


def verify_chat_template(tokenizer, template: ChatTemplate = CHATML, task: Task = VERIFY_TASK) -> TemplateCheck:
    """Check that training and inference see the same tokens under this template.
    Raises ChatTemplateError naming the first problem."""
    markers = {m: _single_token_id(tokenizer, m) for m in template.markers}
    try:
        builder = PromptBuilder(tokenizer=tokenizer)
        prompt = builder.build(task, 0)
        tokens = builder.tokenize(prompt)
    except PromptError as exc:
        raise ChatTemplateError(f"chat template check failed: {exc}") from None

    ids = tokens.input_ids
    inference_ids = tokenizer(prompt.prompt_text, add_special_tokens=False)["input_ids"]
    if ids[: len(inference_ids)] != inference_ids or tokens.prompt_length != len(inference_ids):
        raise ChatTemplateError(
            "the generation prompt does not tokenize to a prefix of the full conversation: the model would be "
            "trained on different tokens than it sees at inference; the template's generation prompt must end "
            "on a token boundary (e.g. after a newline)"
        )
    labelled = [token for token, label in zip(ids, tokens.labels) if label != IGNORE_INDEX]
    in_context = ids[len(inference_ids) :]
    if labelled != in_context:
        raise ChatTemplateError(
            f"answer tokens found by offsets {labelled} differ from the tokens the answer produces in context "
            f"{in_context}"
        )
    eos_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token) if tokenizer.eos_token else None
    if not labelled or labelled[-1] != eos_id:
        raise ChatTemplateError(
            f"the answer does not end in eos ({tokenizer.eos_token}): the model would not learn to stop; set eos to "
            f"the template's end-of-turn marker {template.end_of_turn}"
        )
    if tokenizer.decode(labelled) != prompt.answer_text:
        raise ChatTemplateError(
            f"answer tokens decode to {tokenizer.decode(labelled)!r}, not the answer {prompt.answer_text!r}"
        )
    for marker, marker_id in markers.items():
        if ids.count(marker_id) != prompt.text.count(marker):
            raise ChatTemplateError(f"marker {marker} is not one token everywhere it appears in a rendered prompt")
    with_special = tokenizer(prompt.prompt_text, add_special_tokens=True)["input_ids"]
    adds_bos = tokenizer.convert_ids_to_tokens(with_special[0]) if len(with_special) > len(inference_ids) else None
    return TemplateCheck(len(inference_ids), len(labelled), prompt.answer_text, markers, adds_bos)


# ---------------------------------------------------------------- preparing a tokenizer


@dataclass
class TokenizerChanges:
    added: list[str]  # tokens that were not in the vocabulary (markers, maybe a pad)
    registered: list[str]  # markers that were plain vocabulary entries, now special
    eos: str
    pad: str
    old_eos: str | None


def prepare_tokenizer(tokenizer, template: ChatTemplate) -> TokenizerChanges:
    """Register the markers, set the template, eos and pad (in place)."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    missing = [m for m in template.markers if m not in vocab]
    plain = [m for m in template.markers if m in vocab and m not in special]
    if missing or plain:
        # Special (never split, never normalized) and listed among the special tokens.
        tokens = [AddedToken(m, special=True, normalized=False) for m in missing + plain]
        tokenizer.add_special_tokens({"additional_special_tokens": tokens}, replace_extra_special_tokens=False)
    tokenizer.chat_template = template.jinja
    old_eos, old_pad = tokenizer.eos_token, tokenizer.pad_token
    tokenizer.eos_token = template.end_of_turn
    # Pad must never be the end-of-turn token: a collator that masks pad would then
    # mask the eos the model has to learn. Keep a distinct pad, else reuse a special
    # token the template never renders (the old eos, then unk), else add one.
    spare = [t for t in (old_pad, old_eos, tokenizer.unk_token) if t and t not in template.markers]
    if spare:
        tokenizer.pad_token = spare[0]
    else:
        tokenizer.add_special_tokens({"pad_token": AddedToken("<|pad|>", special=True, normalized=False)})
        missing.append("<|pad|>")
    return TokenizerChanges(missing, plain, tokenizer.eos_token, tokenizer.pad_token, old_eos)


def _grow_embeddings(model, tokenizer, new_ids: list[int]) -> None:
    """Make room for ``new_ids`` and set their rows to the mean of the existing rows."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    known_rows = min(rows, min(new_ids)) if new_ids else rows
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        matrices = [model.get_input_embeddings().weight]
        output = model.get_output_embeddings()
        if output is not None and output.weight.data_ptr() != matrices[0].data_ptr():
            matrices.append(output.weight)
        for matrix in matrices:
            mean = matrix[:known_rows].float().mean(dim=0).to(matrix.dtype)
            matrix[new_ids] = mean


@dataclass
class ChatTemplateResult:
    destination: Path
    changes: TokenizerChanges
    check: TemplateCheck
    resized_from: int
    resized_to: int


def add_chat_template(
    src: str | os.PathLike, dst: str | os.PathLike, *, template: str = "chatml", replace: bool = False
) -> ChatTemplateResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, dst = Path(src), Path(dst)
    chosen = get_template(template)
    if dst.exists():
        raise ModelPreparationError(f"{dst}: already exists; choose a new destination folder or remove it")
    if not any((src / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise ModelPreparationError(f"{src}: no tokenizer files; a chat template lives in the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(src)
    if getattr(tokenizer, "chat_template", None) and not replace:
        raise ModelPreparationError(
            f"{src}: the tokenizer already has a chat template; pass `replace` to swap it for {chosen.name}"
        )
    changes = prepare_tokenizer(tokenizer, chosen)
    check = verify_chat_template(tokenizer, chosen)  # before anything is written

    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    rows = model.get_input_embeddings().weight.shape[0]
    if changes.added:
        _grow_embeddings(model, tokenizer, sorted(tokenizer.convert_tokens_to_ids(changes.added)))
    eos_id = tokenizer.convert_tokens_to_ids(changes.eos)
    pad_id = tokenizer.convert_tokens_to_ids(changes.pad)
    old_eos_id = tokenizer.convert_tokens_to_ids(changes.old_eos) if changes.old_eos else None
    model.config.eos_token_id, model.config.pad_token_id = eos_id, pad_id
    generation = model.generation_config
    # Stop at end of turn; the old eos still ends generation if the model emits it.
    generation.eos_token_id = [eos_id] + ([old_eos_id] if old_eos_id not in (None, eos_id) else [])
    generation.pad_token_id = pad_id

    with atomic_dir(dst) as tmp:
        with torch.no_grad():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return ChatTemplateResult(dst, changes, check, rows, model.get_input_embeddings().weight.shape[0])
