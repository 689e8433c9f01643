import copy

import pytest

from arcsub.augment import Augmentation, augmentation_plan
from arcsub.config import PromptConfig
from arcsub.encoding import get_codec
from arcsub.errors import PromptError
from arcsub.prompts import IGNORE_INDEX, Prompt, PromptBuilder, PromptTooLong


def labelled_runs(tokenized):
    """Consecutive runs of labelled token ids."""
    runs, current = [], []
    for label in tokenized.labels:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + ([current] if current else [])


def test_prompt_matches_the_chat_template_and_labels_only_the_answer(default_tokenizer, eval_tasks):
    builder = PromptBuilder(PromptConfig(), default_tokenizer)
    task = eval_tasks[5]
    aug = augmentation_plan(task, 4, seed=1)[3]
    prompt = builder.fit(task, 0, aug)
    expected_prompt = default_tokenizer.apply_chat_template(
        builder.messages(aug.apply_task(task), 0, None), tokenize=False, add_generation_prompt=True
    )
    assert prompt.prompt_text == expected_prompt
    answer = get_codec("minimal").encode(aug.apply_grid(task.test[0].output))
    assert prompt.answer_text == answer + "<|im_end|>"

    tokenized = builder.tokenize(prompt)
    assert len(tokenized.input_ids) == prompt.num_tokens
    prompt_ids = default_tokenizer(prompt.prompt_text, add_special_tokens=False)["input_ids"]
    assert tokenized.input_ids[: tokenized.prompt_length] == prompt_ids
    assert all(label == IGNORE_INDEX for label in tokenized.labels[: tokenized.prompt_length])
    answer_ids = tokenized.labels[tokenized.prompt_length :]
    assert IGNORE_INDEX not in answer_ids
    assert default_tokenizer.decode(answer_ids) == answer + "<|im_end|>"


def test_learn_outputs_labels_every_train_output(default_tokenizer, eval_tasks):
    builder = PromptBuilder(PromptConfig(), default_tokenizer)
    task = eval_tasks[0]
    prompt = builder.build(task, 0)
    runs = labelled_runs(builder.tokenize(prompt, learn_outputs=True))
    codec = get_codec("minimal")
    expected = [codec.encode(p.output) for p in task.train] + [codec.encode(task.test[0].output) + "<|im_end|>"]
    assert [default_tokenizer.decode(run) for run in runs] == expected


@pytest.mark.parametrize("order", ["last", "first", "largest"])
def test_fit_drops_train_pairs_in_the_configured_order(default_tokenizer, eval_tasks, order):
    task = next(t for t in eval_tasks if len(t.train) >= 4)
    full = PromptBuilder(PromptConfig(), default_tokenizer).fit(task)
    assert full.dropped == 0
    budget = full.num_tokens - 1
    builder = PromptBuilder(PromptConfig(max_seq_len=budget, drop_order=order), default_tokenizer)
    fitted = builder.fit(task)
    assert fitted.dropped >= 1 and fitted.num_tokens <= budget
    codec = get_codec("minimal")
    shown = [codec.encode(p.input) in fitted.text for p in task.train]
    if order == "last":
        assert shown[-1] is False and shown[0] is True
    elif order == "first":
        assert shown[0] is False and shown[-1] is True
    else:
        sizes = [len(p.input) * len(p.input[0]) + len(p.output) * len(p.output[0]) for p in task.train]
        assert shown[sizes.index(max(sizes))] is False


def test_fit_reports_tasks_that_cannot_fit(default_tokenizer, eval_tasks):
    builder = PromptBuilder(PromptConfig(max_seq_len=64), default_tokenizer)
    with pytest.raises(PromptTooLong, match=f"task {eval_tasks[0].id} test 0: needs .* tokens"):
        builder.fit(eval_tasks[0])
    # Room reserved for an unknown answer counts against the budget.
    builder = PromptBuilder(PromptConfig(min_train_pairs=len(eval_tasks[0].train)), default_tokenizer)
    roomy = builder.fit(eval_tasks[0], with_answer=False)
    assert builder.fit(eval_tasks[0], with_answer=False, reserve_tokens=8192 - roomy.num_tokens).dropped == 0
    with pytest.raises(PromptTooLong):
        builder.fit(eval_tasks[0], with_answer=False, reserve_tokens=8192 - roomy.num_tokens + 1)


def test_unknown_answer_gives_the_inference_prompt(default_tokenizer, eval_tasks):
    builder = PromptBuilder(PromptConfig(), default_tokenizer)
    prompt = builder.build(eval_tasks[1], 0, Augmentation("rot90"), with_answer=False)
    assert prompt.text == prompt.prompt_text and prompt.answer_text == ""
    assert prompt.prompt_text.endswith("<|im_start|>assistant\n")


def test_a_template_that_moves_the_answer_is_refused(default_tokenizer, eval_tasks):
    tokenizer = copy.deepcopy(default_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}Sure! {% endif %}"
        "{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(PromptError, match="does not render the answer right after the generation prompt"):
        PromptBuilder(PromptConfig(), tokenizer).build(eval_tasks[0])


def test_a_token_across_the_answer_start_is_refused(default_tokenizer):
    builder = PromptBuilder(PromptConfig(), default_tokenizer)
    text = "the answer is wonderful"
    prompt = Prompt("t", 0, "id", text, text.index("nderful"), len(text), (), 1, 0)
    with pytest.raises(PromptError, match="straddles the start of the answer"):
        builder.tokenize(prompt)


def test_no_template_and_no_tokenizer(default_tokenizer, eval_tasks):
    tokenizer = copy.deepcopy(default_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(PromptError, match="add-chat-template"):
        PromptBuilder(PromptConfig(), tokenizer)
    builder = PromptBuilder(PromptConfig())  # built-in ChatML, no token counts
    prompt = builder.build(eval_tasks[0])
    assert prompt.text.startswith("<|im_start|>system\n") and prompt.answer_text.endswith("<|im_end|>")
    with pytest.raises(PromptError, match="needs a tokenizer"):
        builder.fit(eval_tasks[0])
