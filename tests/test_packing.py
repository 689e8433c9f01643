"""Several sequences per forward pass (finetune.tokens_per_step): the same loss and
gradients as the sequences run one by one, answer masks included."""

from __future__ import annotations

import random

import pytest
import torch

from arcsub.augment import random_augmentation
from arcsub.config import Config, FinetuneConfig
from arcsub.errors import ConfigError
from arcsub.finetune import attach_lora, train_examples
from arcsub.finetune.loop import answer_loss
from arcsub.finetune.packing import StepDraw, batch_loss, packing_layout
from arcsub.finetune.precision import Precision
from arcsub.prompts import IGNORE_INDEX, PromptBuilder, TokenizedPrompt
from arcsub.tasks import Task, load_tasks

CPU = torch.device("cpu")
FP32 = Precision("fp32")


@pytest.fixture(scope="module")
def lora_model(tiny_llama_path):
    """The tiny random model with a LoRA whose B matrices are not zero (so A gets gradients too)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    model = attach_lora(model, FinetuneConfig(lora_rank=8))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model


def prompts(tokenizer, *, learn_outputs: bool, count: int = 3) -> list[TokenizedPrompt]:
    """Leave-one-out prompts of ``count`` different lengths under random augmentations."""
    builder = PromptBuilder(Config().prompt, tokenizer)
    rng = random.Random(1)
    found: dict[int, TokenizedPrompt] = {}
    for task in sorted(load_tasks("arc1/training[:60]").tasks, key=lambda t: (t.cells, t.id)):
        loo = Task(task.id, task.train[1:], (task.train[0],))
        aug = random_augmentation(rng, len(loo.train))
        prompt = builder.tokenize(builder.fit(loo, 0, aug, max_seq_len=2048), learn_outputs=learn_outputs)
        found.setdefault(len(prompt.input_ids), prompt)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("not enough prompt lengths")


def loss_and_grads(model, compute) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


@pytest.mark.parametrize("learn_outputs", [False, True], ids=["answer", "every-output"])
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_a_packed_step_has_the_loss_and_gradients_of_its_sequences_one_by_one(
    lora_model, default_tokenizer, layout, learn_outputs
):
    examples = prompts(default_tokenizer, learn_outputs=learn_outputs)
    assert len({len(e.input_ids) for e in examples}) == 3  # different lengths: padding is exercised
    if learn_outputs:  # several labelled spans per sequence
        assert all(sum(1 for a, b in zip(e.labels, e.labels[1:]) if a == IGNORE_INDEX != b) > 1 for e in examples)

    def one_by_one():
        return sum(answer_loss(lora_model, e, CPU, FP32) for e in examples) / len(examples)

    expected_loss, expected = loss_and_grads(lora_model, one_by_one)
    loss, grads = loss_and_grads(lora_model, lambda: batch_loss(lora_model, examples, CPU, FP32, layout)[0])
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert any(float(g.abs().max()) > 0 for n, g in expected.items() if "lora_A" in n)
    for name, gradient in expected.items():
        torch.testing.assert_close(grads[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_without_the_block_mask_packed_sequences_would_see_each_other(lora_model, default_tokenizer):
    """The equality above is not an accident of the data: the second sequence of a packed
    row gives its own logits only through transformers' packed-sequence mask (restarting
    position ids, no attention mask, no cache); a one-filled attention mask turns that
    detection off, and the row is then one long sequence."""
    first, second = prompts(default_tokenizer, learn_outputs=False)[:2]
    ids = torch.tensor([first.input_ids + second.input_ids])
    positions = torch.tensor([list(range(len(first.input_ids))) + list(range(len(second.input_ids)))])
    with torch.no_grad():
        alone = lora_model(input_ids=torch.tensor([second.input_ids]), use_cache=False).logits[0]
        packed = lora_model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, len(first.input_ids) :]
        leaky = lora_model(input_ids=ids, position_ids=positions, attention_mask=torch.ones_like(ids),
                           use_cache=False).logits[0, len(first.input_ids) :]  # fmt: skip
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(leaky, alone, atol=1e-3)


def test_the_step_draw_fills_the_token_budget_and_carries_what_does_not_fit():
    lengths = [30, 50, 40, 90, 10, 10]
    drawn = []

    def draw(i):
        drawn.append(i)
        n = lengths[i % len(lengths)]
        return TokenizedPrompt(list(range(n)), [IGNORE_INDEX] * (n - 1) + [1], n - 1)

    steps = StepDraw(draw, tokens_per_step=100)
    sizes = [[len(e.input_ids) for e in steps.next_step()] for _ in range(3)]
    assert sizes == [[30, 50], [40], [90, 10]]  # 120 > 100; 130 > 100; the carried 90 fits with a 10
    assert steps.drawn == len(drawn) == 6 and drawn == list(range(6))  # each drawn once, in order
    long = StepDraw(lambda i: TokenizedPrompt(list(range(300)), [1] * 300, 0), tokens_per_step=100)
    assert [len(e.input_ids) for e in long.next_step()] == [300]  # one sequence at least


def test_training_with_tokens_per_step_packs_and_counts_every_sequence(lora_model, default_tokenizer):
    examples = prompts(default_tokenizer, learn_outputs=False)
    budget = sum(len(e.input_ids) for e in examples)  # the three fit in one step
    config = FinetuneConfig(steps=2, learning_rate=1e-3, warmup_steps=0, tokens_per_step=budget)
    state = {n: p.detach().clone() for n, p in lora_model.named_parameters() if p.requires_grad}
    try:
        result = train_examples(lora_model, examples, config, progress=False)
    finally:
        with torch.no_grad():
            for n, p in lora_model.named_parameters():
                if p.requires_grad:
                    p.copy_(state[n])
    assert result.steps == 2 and result.micro_steps == 7  # 3 + 3, the seventh carried into a third step
    assert result.tokens == 2 * budget
    assert packing_layout(lora_model, "auto") == "packed"  # Llama on sdpa: transformers' packed masks


def test_tokens_per_step_is_one_pass_and_named_when_misused():
    with pytest.raises(ConfigError, match="tokens_per_step = 4096 with grad_accum = 2"):
        FinetuneConfig(tokens_per_step=4096, grad_accum=2)
    with pytest.raises(ConfigError, match="finetune.packing = 'rows'"):
        FinetuneConfig(packing="rows")


@pytest.mark.parametrize("lever", ["fused_optimizer", "compile"])
def test_the_fixed_cost_levers_train_the_same_weights(tiny_llama_path, default_tokenizer, lever):
    """Each lever changes how a step runs, not what it computes: the same losses as the
    plain packed step (compile: a padded row, bucketed; fused: one AdamW kernel)."""
    from transformers import AutoModelForCausalLM

    examples = prompts(default_tokenizer, learn_outputs=False)
    budget = sum(len(e.input_ids) for e in examples)
    base = {"steps": 3, "learning_rate": 1e-3, "warmup_steps": 0, "tokens_per_step": budget, "compile_bucket": 64}
    losses = {}
    for name, changes in (("plain", {}), (lever, {lever: True})):
        torch.manual_seed(0)
        model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32),
                            FinetuneConfig(lora_rank=8))  # fmt: skip
        losses[name] = train_examples(model, examples, FinetuneConfig(**base, **changes), progress=False).losses
    assert losses[lever] == pytest.approx(losses["plain"], rel=1e-4)


def test_a_steps_expected_tokens_follow_the_packing_budget(default_tokenizer):
    from arcsub.finetune import expected_step_tokens

    task = load_tasks("arc1/training[0d3d703e]").tasks[0]
    config = Config()
    one = expected_step_tokens(task, default_tokenizer, config)
    assert 100 < one < 400  # a leave-one-out prompt of 3x3 grids
    config.finetune.tokens_per_step = 4096
    assert expected_step_tokens(task, default_tokenizer, config) == pytest.approx(4096 - one / 2)
    config.finetune.tokens_per_step = 64  # below one sequence: a step still carries one
    assert expected_step_tokens(task, default_tokenizer, config) == pytest.approx(one)
