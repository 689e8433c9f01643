"""`arcsub model add-chat-template`: markers, embeddings, eos/pad, and the verification
that makes the silent all-masked failure impossible."""

from __future__ import annotations

import json

import pytest

from arcsub.cli import main
from arcsub.errors import ChatTemplateError, ModelPreparationError
from arcsub.models.chat_template import (
    CHATML,
    VERIFY_TASK,
    ChatTemplate,
    add_chat_template,
    prepare_tokenizer,
    verify_chat_template,
)
from arcsub.models.replicas import llama_style_tokenizer
from arcsub.prompts import IGNORE_INDEX, PromptBuilder


def completion_only_labels(ids: list[int], response_ids: list[int]) -> list[int]:
    """What a completion-only collator does: search the assistant marker's token ids
    in the sequence and learn what follows; when the search fails, mask everything."""
    for start in range(len(ids) - len(response_ids) + 1):
        if ids[start : start + len(response_ids)] == response_ids:
            end = start + len(response_ids)
            return [IGNORE_INDEX] * end + ids[end:]
    return [IGNORE_INDEX] * len(ids)


def test_the_known_failure_and_that_verification_catches_it():
    # A Llama-style BPE tokenizer that never had a template; the template string is set
    # by hand, without registering its markers (the mistake behind the failure).
    tokenizer = llama_style_tokenizer()
    tokenizer.chat_template = CHATML.jinja
    prompt = PromptBuilder(tokenizer=tokenizer).build(VERIFY_TASK, 0)
    ids = tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    response = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    labels = completion_only_labels(ids, response)
    assert all(label == IGNORE_INDEX for label in labels)  # every example silently masked

    with pytest.raises(ChatTemplateError, match=r"marker <\|im_start\|> tokenizes into \d+ pieces"):
        verify_chat_template(tokenizer)


@pytest.mark.parametrize("name", ["AMD-Llama-135m", "TinyMistral-248M"])
def test_add_chat_template_to_a_model_without_one(replica, tmp_path, name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src = replica(name)
    result = add_chat_template(src, tmp_path / "chat")
    assert result.changes.added == ["<|im_start|>", "<|im_end|>"]
    assert (result.resized_from, result.resized_to) == (800, 802)

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "chat")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "</s>"
    assert {"<|im_start|>", "<|im_end|>"} <= set(tokenizer.all_special_tokens)
    check = verify_chat_template(tokenizer)  # the written tokenizer passes again
    assert check.markers == {"<|im_start|>": 800, "<|im_end|>": 801} and check.adds_bos == "<s>"

    # New embedding rows (input and the untied output head) are the mean of the old ones.
    before = AutoModelForCausalLM.from_pretrained(src)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "chat")
    for get in (lambda m: m.get_input_embeddings().weight, lambda m: m.get_output_embeddings().weight):
        old, new = get(before), get(after)
        assert torch.equal(new[:800], old)
        assert torch.allclose(new[800:], old.mean(0).expand(2, -1), atol=1e-6)
    assert after.config.eos_token_id == 801 and after.config.pad_token_id == 2
    assert GenerationConfig.from_pretrained(tmp_path / "chat").eos_token_id == [801, 2]

    # Training labels by offsets cover exactly the answer grid and the end of turn.
    builder = PromptBuilder(tokenizer=tokenizer)
    prompt = builder.build(VERIFY_TASK, 0)
    tokens = builder.tokenize(prompt)
    learned = [t for t, label in zip(tokens.input_ids, tokens.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "808\n080<|im_end|>"
    with torch.no_grad():
        assert torch.isfinite(after(torch.tensor([tokens.input_ids])).logits).all()


def test_a_generation_prompt_off_the_token_boundary_is_refused():
    tokenizer = llama_style_tokenizer()
    # Same markers, but the generation prompt lacks the newline the assistant turn has.
    broken = ChatTemplate("broken", CHATML.jinja.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant'"),
                          CHATML.markers, CHATML.end_of_turn)  # fmt: skip
    prepare_tokenizer(tokenizer, broken)
    with pytest.raises(ChatTemplateError, match="right after the generation prompt"):
        verify_chat_template(tokenizer, broken)


def test_existing_template_needs_replace(replica, tmp_path):
    src = replica("Qwen2.5-0.5B-Instruct")
    with pytest.raises(ModelPreparationError, match="already has a chat template; pass `replace`"):
        add_chat_template(src, tmp_path / "again")
    result = add_chat_template(src, tmp_path / "again", replace=True)
    assert result.changes.added == [] and result.resized_from == result.resized_to
    assert result.changes.pad == "<|endoftext|>"


def test_default_model_template_verifies_and_the_cli_rewrites_it(
    default_model_path, default_tokenizer, tmp_path, capsys
):
    check = verify_chat_template(default_tokenizer)
    assert check.answer_tokens == len("808\n080") + 1 and check.adds_bos is None
    assert main(["model", "add-chat-template", "default", str(tmp_path / "d")]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["model", "add-chat-template", "default", str(tmp_path / "d"), "--replace"]) == 0
    out = capsys.readouterr().out
    assert "added tokens: none" in out and "49152 -> 49152 rows" in out and "verified: answer" in out
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["eos_token_id"] == 2 and config["pad_token_id"] == 0  # pad moved off end-of-turn


def test_pad_is_never_the_end_of_turn_token():
    tokenizer = llama_style_tokenizer()
    assert prepare_tokenizer(tokenizer, CHATML).pad == "</s>"  # no pad before: the old eos
    bare = llama_style_tokenizer()
    bare.eos_token = bare.unk_token = None
    changes = prepare_tokenizer(bare, CHATML)  # nothing spare: a new pad token
    assert changes.pad == "<|pad|>" and changes.added == ["<|im_start|>", "<|im_end|>", "<|pad|>"]
    assert bare.convert_tokens_to_ids("<|pad|>") == len(bare) - 1
