"""The fine-tuning engine on real transformers + peft models (a tiny random Llama with
the default tokenizer, the embedded default model, and a template-less BPE model)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest

from arcsub.leakage import read_training_manifest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from arcsub.augment import Augmentation
from arcsub.cli import main as cli_main
from arcsub.config import Config, FinetuneConfig, config_from_dict, config_to_toml, load_config
from arcsub.errors import ConfigError, FinetuneError
from arcsub.finetune import (
    STOP_DEADLINE,
    STOP_MAX_STEPS,
    STOP_NON_FINITE,
    STOP_SKIPPED,
    attach_lora,
    load_adapter,
    save_adapter,
    save_merged,
    task_slice,
    train_examples,
    train_task,
    train_tasks,
)
from arcsub.finetune.data import LeaveOneOut
from arcsub.finetune.loop import StepTimer, answer_loss, make_scheduler
from arcsub.finetune.precision import Precision, resolve_precision
from arcsub.prompts import IGNORE_INDEX, PromptBuilder
from arcsub.tasks import Task, load_tasks

SMALL = "arc1/training[0d3d703e,25d8a9c8,3c9b0459]"  # 3x3 grids, 4 train pairs each
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread while these tests run: the 2 cores here are shared, and with
    them busy, 2 OpenMP threads made a 154-token forward of the default model 20x
    slower (12 s against 0.5 s with one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_tasks() -> list[Task]:
    return load_tasks(SMALL).tasks


def quick(**changes) -> FinetuneConfig:
    values = dict(steps=4, learning_rate=1e-2, warmup_steps=0, log_every=1, max_seq_len=1024)
    return FinetuneConfig(**(values | changes))


def config_with(**changes) -> Config:
    config = Config()
    config.finetune = quick(**changes)
    return config


def tiny_lora(path, **changes):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return attach_lora(model, quick(**changes))


def fixed_examples(tasks, tokenizer, config: Config):
    """Leave-one-out prompts without augmentation: the same every time."""
    builder = PromptBuilder(config.prompt, tokenizer)
    examples = []
    for task in tasks:
        for q in range(len(task.train)):
            loo = Task(task.id, task.train[:q] + task.train[q + 1 :], (task.train[q],))
            examples.append(builder.tokenize(builder.fit(loo, 0, Augmentation(), max_seq_len=1024)))
    return examples


def mean_loss(model, examples) -> float:
    model.eval()
    with torch.no_grad():
        losses = [float(answer_loss(model, ex, CPU, Precision("fp32"))) for ex in examples]
    return sum(losses) / len(losses)


def trainable(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------- config


def test_finetune_config_validates_and_round_trips():
    with pytest.raises(ConfigError, match="finetune.precision"):
        FinetuneConfig(precision="fp8")
    with pytest.raises(ConfigError, match="finetune.lora_rank = 0; it must be at least 1"):
        FinetuneConfig(lora_rank=0)
    with pytest.raises(ConfigError, match="DoRA"):
        FinetuneConfig(use_dora=True)  # for_vllm defaults to true
    FinetuneConfig(use_dora=True, for_vllm=False)
    config = Config()
    config.finetune = FinetuneConfig(lora_rank=8, target_modules=["q_proj", "v_proj"], max_seq_len=2048)
    import tomllib

    assert config_from_dict(tomllib.loads(config_to_toml(config))) == config
    with pytest.raises(ConfigError, match="finetune: unknown key"):
        config_from_dict({"finetune": {"rank": 8}})


def learning_rates(config: FinetuneConfig, total: int) -> list[float]:
    """The rate at each optimizer step of a ``total``-step run (lr 1)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, config, total)
    rates = []
    for _ in range(total):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_lr_schedule_warms_up_then_decays():
    rates = learning_rates(FinetuneConfig(warmup_steps=4, lr_schedule="cosine"), 20)
    assert rates[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]  # linear warm-up from 0 (transformers' schedules)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:])) and rates[-1] < 0.05
    linear = learning_rates(FinetuneConfig(warmup_steps=0, lr_schedule="linear"), 10)
    assert linear == pytest.approx([1 - s / 10 for s in range(10)])
    assert learning_rates(FinetuneConfig(warmup_steps=2, lr_schedule="constant"), 10)[2:] == [1.0] * 8


def test_precision_follows_the_device_unless_forced():
    assert resolve_precision("auto", CPU).name == "fp32"
    assert resolve_precision("fp16", CPU).uses_scaler and resolve_precision("fp16", CPU).base_dtype() == torch.float16
    assert resolve_precision("bf16", CPU).autocast_dtype == torch.bfloat16


# ---------------------------------------------------------------- adapters


def test_attach_lora_targets_linear_layers_and_refuses_dora_for_vllm(tiny_llama_path):
    model = tiny_lora(tiny_llama_path, lora_rank=4)
    lora = model.peft_config["default"]
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert not any("lm_head" in n or "embed" in n for n, p in model.named_parameters() if p.requires_grad)

    from transformers import AutoModelForCausalLM

    config = FinetuneConfig(use_dora=True, for_vllm=False)
    config.for_vllm = True  # changed after validation: attach_lora checks again
    with pytest.raises(ConfigError, match="vLLM cannot serve DoRA"):
        attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_path), config)
    with pytest.raises(ConfigError, match="no module named attn_q"):
        attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_path), FinetuneConfig(target_modules=["attn_q"]))


def test_saved_adapter_loads_back_and_changes_the_output(tiny_llama_path, default_tokenizer, small_tasks, tmp_path):
    from transformers import AutoModelForCausalLM

    config = config_with(steps=3)
    model = tiny_lora(tiny_llama_path)
    result = train_task(model, default_tokenizer, small_tasks[0], config)
    assert result.steps == 3
    adapter = save_adapter(model, tmp_path / "adapter", result=result)
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["r"] == config.finetune.lora_rank and not saved.get("use_dora")
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "train_result.json").read_text())["steps"] == 3

    ids = torch.tensor([fixed_examples(small_tasks[:1], default_tokenizer, config)[0].input_ids])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32).eval()
        plain = base(input_ids=ids).logits
        loaded = load_adapter(base, adapter).eval()
        reloaded = loaded(input_ids=ids).logits
    assert torch.allclose(reloaded, trained, atol=1e-5)
    assert (reloaded - plain).abs().max() > 1e-3

    merged_dir = save_merged(loaded, default_tokenizer, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, trained, atol=1e-4)


# ---------------------------------------------------------------- data


def test_labels_cover_only_the_answer(default_tokenizer, small_tasks):
    config = config_with()
    data = LeaveOneOut(small_tasks, PromptBuilder(config.prompt, default_tokenizer), config)
    assert data.task_ids == [t.id for t in small_tasks] and not data.skipped
    rng = random.Random(0)
    for step in range(12):
        ex = data(step, rng)
        assert all(label == IGNORE_INDEX for label in ex.labels[: ex.prompt_length])
        assert ex.labels[ex.prompt_length :] == ex.input_ids[ex.prompt_length :]
        answer = default_tokenizer.decode(ex.input_ids[ex.prompt_length :])
        grid, eos = answer[: -len("<|im_end|>")], answer[-len("<|im_end|>") :]
        assert eos == "<|im_end|>"
        rows = grid.split("\n")
        assert len(rows) == 3 and all(len(r) == 3 and r.isdigit() for r in rows)  # the 3x3 answer, nothing else
        prompt = default_tokenizer.decode(ex.input_ids[: ex.prompt_length])
        assert prompt.endswith("<|im_start|>assistant\n")


def test_learn_outputs_labels_every_output_grid(default_tokenizer, small_tasks):
    config = config_with(learn_outputs=True)
    data = LeaveOneOut(small_tasks[:1], PromptBuilder(config.prompt, default_tokenizer), config)
    ex = data(0, random.Random(1))
    labelled = [i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX]
    assert min(labelled) < ex.prompt_length  # train outputs inside the prompt are learned too
    spans, start = [], labelled[0]
    for a, b in zip(labelled, labelled[1:] + [None]):
        if b != a + 1:
            spans.append(default_tokenizer.decode(ex.input_ids[start : a + 1]))
            start = b
    assert len(spans) == 4  # 3 example outputs + the answer
    assert all(len(s.replace("<|im_end|>", "").split("\n")) == 3 for s in spans)


def test_prompts_stay_within_a_tight_budget(default_tokenizer):
    """At a budget only the smallest prompt meets, draws that do not fit fall back to it."""
    task = load_tasks("arc1/training[a416b8f3]").tasks[0]  # 3 pairs of non-square grids
    config = config_with()
    probe = LeaveOneOut([task], PromptBuilder(config.prompt, default_tokenizer), config)
    builder = PromptBuilder(config.prompt, default_tokenizer)
    smallest = min(
        builder.count_tokens(builder.build(q.task, 0, keep=list(q.smallest)).text) for q in probe.questions[task.id]
    )
    config = config_with(max_seq_len=smallest)
    data = LeaveOneOut([task], PromptBuilder(config.prompt, default_tokenizer), config)
    lengths = [len(data(step, random.Random(step)).input_ids) for step in range(10)]
    assert max(lengths) <= smallest


def test_task_that_cannot_fit_is_skipped_with_a_reason(tiny_llama_path, default_tokenizer, small_tasks, caplog):
    model = tiny_lora(tiny_llama_path)
    before = trainable(model)
    with caplog.at_level("INFO", logger="arcsub.finetune"):
        result = train_task(model, default_tokenizer, small_tasks[0], config_with(max_seq_len=40))
    assert result.stop_reason == STOP_SKIPPED and result.steps == 0
    assert "over the budget of 40" in result.message and "over the budget of 40" in caplog.text
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_a_budget_beyond_the_model_window_is_refused(tiny_llama_path, default_tokenizer, small_tasks):
    model = tiny_lora(tiny_llama_path)  # window 8192
    with pytest.raises(ConfigError, match="exceeds the model's window of 8192"):
        train_task(model, default_tokenizer, small_tasks[0], config_with(max_seq_len=16384))


def test_zero_steps_is_a_valid_setting_that_the_trainers_refuse(
    tiny_llama_path, default_tokenizer, small_tasks, tmp_path
):
    """``finetune.steps = 0`` spells "no test-time fine-tuning" in a config (arcsub run
    skips the stage); asked to train 0 steps, the engine says so instead of saving
    untrained adapters."""
    config = config_with(steps=0)
    assert config_from_dict({"finetune": {"steps": 0}}).finetune.steps == 0
    model = tiny_lora(tiny_llama_path)
    with pytest.raises(FinetuneError, match="0 fine-tuning steps: nothing to train"):
        train_tasks(model, default_tokenizer, small_tasks[:1], config, tmp_path / "adapters")
    assert not (tmp_path / "adapters").exists()
    assert run_cli("--model", tiny_llama_path, "--data", SMALL, "--out", tmp_path / "ft", "--steps", 0) == 2
    assert not (tmp_path / "ft" / "checkpoints").exists()
    with pytest.raises(ConfigError, match="finetune.steps = -1; it must not be negative"):
        FinetuneConfig(steps=-1)


# ---------------------------------------------------------------- training


def test_loss_goes_down_on_the_tiny_model(tiny_llama_path, default_tokenizer, small_tasks):
    config = config_with(steps=12)
    model = tiny_lora(tiny_llama_path)
    probe = fixed_examples(small_tasks[:1], default_tokenizer, config)
    before = mean_loss(model, probe)
    result = train_task(model, default_tokenizer, small_tasks[0], config)
    assert result.stop_reason == STOP_MAX_STEPS and result.steps == 12 and len(result.losses) == 12
    assert result.tokens > 0 and result.tokens_per_second > 0 and result.precision == "fp32"
    assert mean_loss(model, probe) < before - 0.1


@pytest.mark.model
def test_loss_goes_down_on_the_default_model(default_model_path, default_tokenizer, small_tasks):
    from transformers import AutoModelForCausalLM

    config = config_with(steps=5, learning_rate=1e-3, lora_rank=8)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32), config.finetune)
    probe = fixed_examples(small_tasks[:1], default_tokenizer, config)
    before = mean_loss(model, probe)
    result = train_task(model, default_tokenizer, small_tasks[0], config)
    assert result.steps == 5 and all(math.isfinite(v) for v in result.losses)
    after = mean_loss(model, probe)
    assert after < before * 0.9, (before, after)


def test_no_step_starts_that_would_end_past_the_deadline():
    now = [100.0]
    timer = StepTimer(deadline=109.0, clock=lambda: now[0])
    started = []
    while not timer.would_overrun():
        started.append(now[0])
        now[0] += 2.0  # every step takes 2 s on this clock
        timer.record(2.0)
    # steps at 100, 102, 104, 106 end by 108; one at 108 would end at 110, past 109
    assert started == [100.0, 102.0, 104.0, 106.0] and timer.seconds_left() == pytest.approx(1.0)
    # the estimate is a moving average: one slow step makes the next start wait for it
    timer = StepTimer(deadline=10.0, clock=lambda: 4.0)
    timer.record(1.0)
    assert not timer.would_overrun()
    timer.record(21.0)  # 0.7 * 1 + 0.3 * 21 = 7: a step now would end at 11
    assert timer.would_overrun()
    assert not StepTimer(deadline=None, clock=lambda: 1e12).would_overrun()


def test_deadline_is_honoured(tiny_llama_path, default_tokenizer, small_tasks):
    model = tiny_lora(tiny_llama_path)
    deadline = time.time() + 2.0
    result = train_task(model, default_tokenizer, small_tasks[0], config_with(), deadline=deadline, max_steps=10_000)
    assert result.stop_reason == STOP_DEADLINE and 0 < result.steps < 10_000  # the rule: the test above

    late = train_task(model, default_tokenizer, small_tasks[0], config_with(), deadline=time.time() - 1)
    assert late.stop_reason == STOP_DEADLINE and late.steps == 0


def test_one_process_shares_a_deadline_by_size_and_passes_on_unused_time():
    # train_tasks: tasks of size 1 and 3, 100 s left, no other worker (the kernel's
    # several workers are in test_kernel.py)
    first = task_slice(1, 4, now=0, deadline=100)
    assert first == pytest.approx(25)
    assert task_slice(3, 3, now=first, deadline=100) == pytest.approx(75)
    assert task_slice(3, 3, now=10, deadline=100) == pytest.approx(90)  # the first ended early
    assert task_slice(3, 3, now=120, deadline=100) == 0


class NaNAt:
    """Forward hook making a decoder layer's output NaN on chosen calls."""

    def __init__(self, calls):
        self.calls, self.count = set(calls), 0

    def __call__(self, module, args, output):
        hit = self.count in self.calls
        self.count += 1
        if not hit:
            return None
        if isinstance(output, tuple):
            return (output[0] * float("nan"), *output[1:])
        return output * float("nan")


def first_layer(model):
    return model.get_base_model().model.layers[0]


def test_a_nan_step_is_skipped(tiny_llama_path, default_tokenizer, small_tasks):
    model = tiny_lora(tiny_llama_path)
    examples = fixed_examples(small_tasks[:1], default_tokenizer, config_with())
    first_layer(model).register_forward_hook(NaNAt({2}))
    result = train_examples(model, examples, quick(steps=5))
    assert result.stop_reason == STOP_MAX_STEPS and result.steps == 5 and result.skipped_steps == 1
    assert result.micro_steps == 6 and not result.restored
    assert all(math.isfinite(v) for v in result.losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_steps_in_a_row_restore_the_last_good_weights(tiny_llama_path, default_tokenizer, small_tasks, caplog):
    model = tiny_lora(tiny_llama_path)
    examples = fixed_examples(small_tasks[:1], default_tokenizer, config_with())
    first_layer(model).register_forward_hook(NaNAt(range(3, 100)))
    after_step = {}
    config = quick(steps=20, nan_patience=3, snapshot_every=1)
    with caplog.at_level("WARNING", logger="arcsub.finetune"):
        result = train_examples(
            model, examples, config, on_step=lambda state: after_step.update({state.result.steps: trainable(model)})
        )
    assert result.stop_reason == STOP_NON_FINITE and result.restored
    assert result.steps == 3 and result.skipped_steps == 3
    assert "restored the last good weights" in caplog.text
    # Steps 1-3 were finite; the weights after step 3 then gave NaN: the last weights
    # known to give a finite loss are those after step 2.
    now = trainable(model)
    assert all(torch.equal(now[n], after_step[2][n]) for n in now)
    assert not all(torch.equal(now[n], after_step[3][n]) for n in now)


def test_fp16_with_gradient_scaler_runs_with_fp32_adapter(tiny_llama_path, default_tokenizer, small_tasks):
    """The T4 path (fp16 base weights, fp16 autocast, GradScaler), forced on CPU."""
    from transformers import AutoModelForCausalLM

    config = quick(steps=3, precision="fp16")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float16)
    model = attach_lora(base, config)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.float16}
    before = trainable(model)
    result = train_examples(model, fixed_examples(small_tasks[:1], default_tokenizer, config_with()), config)
    assert result.precision == "fp16" and result.steps == 3 and all(math.isfinite(v) for v in result.losses)
    assert result.scaler_skips < 3  # the scaler found a scale that lets the adapter move
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_steps_the_fp16_scaler_skips_are_done_again_and_do_not_move_the_schedule(
    tiny_llama_path, default_tokenizer, small_tasks
):
    """A scale far too high overflows the first steps: each is skipped and done again at
    half the scale, the schedule advances only with real updates, and the run still
    makes the steps it was asked for."""
    from transformers import AutoModelForCausalLM

    config = quick(steps=3, precision="fp16", scaler_init_scale=2.0**30, warmup_steps=2)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float16), config)
    schedule_at_step, updates_at_step = [], []

    def on_step(state):
        schedule_at_step.append(state.scheduler.last_epoch)
        adam = next(iter(state.optimizer.state.values()), {})  # AdamW counts the updates it made
        updates_at_step.append(int(adam.get("step", 0)))

    result = train_examples(
        model, fixed_examples(small_tasks[:1], default_tokenizer, config_with()), config, on_step=on_step
    )
    assert result.scaler_skips >= 1 and result.skipped_steps == 0
    assert result.steps == 3 and len(result.losses) == 3
    assert schedule_at_step == updates_at_step == [1, 2, 3]


def test_a_model_without_trainable_weights_is_refused(tiny_llama_path, default_tokenizer, small_tasks):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).requires_grad_(False)
    with pytest.raises(FinetuneError, match="no trainable weights"):
        train_examples(model, fixed_examples(small_tasks[:1], default_tokenizer, config_with()), quick())


def test_gradient_checkpointing_and_accumulation(tiny_llama_path, default_tokenizer, small_tasks):
    examples = fixed_examples(small_tasks[:1], default_tokenizer, config_with())
    plain = train_examples(tiny_lora(tiny_llama_path), examples, quick(steps=2, grad_accum=2))
    model = tiny_lora(tiny_llama_path)
    checkpointed = train_examples(model, examples, quick(steps=2, grad_accum=2, gradient_checkpointing=True))
    assert plain.micro_steps == checkpointed.micro_steps == 4
    assert plain.tokens == sum(len(ex.input_ids) for ex in examples)
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-4)
    assert not model.get_base_model().is_gradient_checkpointing  # switched back off


# ---------------------------------------------------------------- modes and saving


def test_per_task_and_shared_modes(tiny_llama_path, default_tokenizer, small_tasks, tmp_path, caplog):
    model = tiny_lora(tiny_llama_path)
    initial = trainable(model)
    config = config_with(steps=2)
    results = train_tasks(model, default_tokenizer, small_tasks[:2], config, tmp_path / "per_task")
    assert set(results) == {t.id for t in small_tasks[:2]}
    for task in small_tasks[:2]:
        assert (tmp_path / "per_task" / task.id / "adapter_model.safetensors").is_file()
    assert load_config(tmp_path / "per_task" / "config.toml") == config
    a, b = (load_adapter_state(tmp_path / "per_task" / t.id) for t in small_tasks[:2])
    assert any(not torch.equal(a[k], b[k]) for k in a)  # each task its own adapter
    assert all(torch.equal(initial[n], p) for n, p in model.named_parameters() if p.requires_grad)

    with caplog.at_level("INFO", logger="arcsub.finetune"):
        again = train_tasks(model, default_tokenizer, small_tasks[:2], config, tmp_path / "per_task")
    assert "not trained again" in caplog.text and again[small_tasks[0].id].losses == results[small_tasks[0].id].losses

    config.finetune.adapter_mode = "shared"
    shared = train_tasks(model, default_tokenizer, small_tasks, config, tmp_path / "shared")
    assert len({id(r) for r in shared.values()}) == 1
    assert (tmp_path / "shared" / "shared" / "adapter_config.json").is_file()


def load_adapter_state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


# ---------------------------------------------------------------- a model without a chat template


def bpe_tokenizer_without_template(tasks):
    """A small byte-level BPE tokenizer (Llama-3 style) trained here; no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from arcsub.encoding import get_codec

    codec = get_codec("minimal")
    corpus = [codec.encode(g) for t in tasks for p in t.train for g in (p.input, p.output)]
    corpus += ["Find the rule that turns each input grid into its output grid, then apply it to the test input."] * 5
    corpus += ["input:\noutput:\n", "system user assistant"] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def test_a_model_given_a_chat_template_trains_without_the_masking_failure(small_tasks, tmp_path):
    """A template-less model, prepared by ``arcsub model add-chat-template``'s code,
    loaded and trained by the engine: every example has answer labels, ending in the
    new end-of-turn token, and the loss is finite and goes down."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from arcsub.errors import PromptError
    from arcsub.finetune import load_for_training
    from arcsub.models.chat_template import add_chat_template

    tokenizer = bpe_tokenizer_without_template(small_tasks)
    assert not tokenizer.chat_template
    with pytest.raises(PromptError, match="no chat template"):
        PromptBuilder(Config().prompt, tokenizer)
    torch.manual_seed(0)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(llama).save_pretrained(tmp_path / "bare")
    tokenizer.save_pretrained(tmp_path / "bare")
    add_chat_template(tmp_path / "bare", tmp_path / "chatml")

    config = config_with(steps=6)
    model, tokenizer = load_for_training(tmp_path / "chatml", config, device=CPU)
    assert tokenizer.eos_token == "<|im_end|>"
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    data = LeaveOneOut(small_tasks[:1], PromptBuilder(config.prompt, tokenizer), config)
    for step in range(6):
        ex = data(step, random.Random(step))
        assert ex.num_answer_tokens == len(ex.input_ids) - ex.prompt_length > 0
        assert all(label == IGNORE_INDEX for label in ex.labels[: ex.prompt_length])
        assert ex.labels[-1] == end_of_turn
        assert len(tokenizer.decode(ex.input_ids[ex.prompt_length : -1]).split("\n")) == 3

    probe = fixed_examples(small_tasks[:1], tokenizer, config)
    before = mean_loss(model, probe)
    result = train_task(model, tokenizer, small_tasks[0], config)
    assert result.steps == 6 and all(math.isfinite(v) and v > 0 for v in result.losses)
    assert mean_loss(model, probe) < before


# ---------------------------------------------------------------- the command


def run_cli(*args) -> int:
    return cli_main(["finetune", *map(str, args)])


def test_finetune_command_checkpoints_and_resumes(tiny_llama_path, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--model", tiny_llama_path, "--data", SMALL, "--out", out, "--no-progress"]
    assert run_cli(*common, "--steps", 2, "--checkpoint-every", 1, "--max-seq-len", 1024, "--lr", 0.01) == 0
    first = json.loads((out / "adapter" / "train_result.json").read_text())
    assert first["steps"] == 2 and first["stop_reason"] == STOP_MAX_STEPS
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-000001", "step-000002"]
    assert load_config(out / "checkpoints" / "step-000002" / "config.toml") == load_config(out / "config.toml")
    assert load_config(out / "config.toml").finetune.learning_rate == 0.01
    assert (out / "checkpoints" / "step-000002" / "adapter" / "adapter_config.json").is_file()
    manifest = read_training_manifest(out / "adapter")  # evaluations refuse what it trained on
    assert manifest.sources == [SMALL] and manifest.task_ids == {t.id for t in load_tasks(SMALL).tasks}

    assert run_cli(*common, "--steps", 3) == 2  # another run into the same folder is refused
    assert "--resume" in capsys.readouterr().err
    assert run_cli("--out", out, "--resume", "--lr", 0.1) == 2  # resume keeps the saved config
    assert run_cli("--out", out, "--resume", "--steps", 4, "--no-progress") == 0
    resumed = json.loads((out / "adapter" / "train_result.json").read_text())
    assert resumed["steps"] == 4 and resumed["losses"][:2] == first["losses"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000004"]

    # The resumed run equals one that was never interrupted (same data stream; all
    # 4 steps lie in the default 10-step warm-up, so the schedule does not depend
    # on the total either).
    whole = tmp_path / "whole"
    assert run_cli("--model", tiny_llama_path, "--data", SMALL, "--out", whole, "--no-progress",
                   "--steps", 4, "--checkpoint-every", 1, "--max-seq-len", 1024, "--lr", 0.01) == 0  # fmt: skip
    uninterrupted = json.loads((whole / "adapter" / "train_result.json").read_text())
    assert uninterrupted["losses"] == pytest.approx(resumed["losses"], rel=1e-5)


def test_finetune_command_runs_data_parallel_under_accelerate_launch(
    tiny_llama_path, tmp_path, arcsub_under_accelerate
):
    """Two CPU processes (gloo) under ``accelerate launch``: the multi-GPU recipe."""
    out = tmp_path / "ddp"
    done = arcsub_under_accelerate(
        "finetune", "--model", tiny_llama_path, "--data", SMALL, "--out", out,
        "--steps", 3, "--max-seq-len", 1024, "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr
    result = json.loads((out / "adapter" / "train_result.json").read_text())
    assert result["steps"] == 3 and result["micro_steps"] == 3
    assert (out / "checkpoints" / "step-000003" / "trainer_state.pt").is_file()


def test_training_can_start_from_the_shipped_pretrained_adapter(default_model_path, default_tokenizer, small_tasks):
    """finetune.initial_adapter = "pretrained": the chat model under the default's ARC
    adapter, trainable, at its rank (8), and training moves it."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from arcsub.finetune.model import prepare_for_training, training_lora_rank
    from arcsub.models.pretrained import shipped_adapter

    config = quick(steps=1, initial_adapter="pretrained", learning_rate=1e-3)
    assert training_lora_rank(config) == 8 and training_lora_rank(quick()) == quick().lora_rank
    model = prepare_for_training(AutoModelForCausalLM.from_pretrained(default_model_path), config)
    shipped = load_file(shipped_adapter() / "adapter_model.safetensors")
    start = trainable(model)
    assert len(start) == len(shipped) and {p.dtype for p in start.values()} == {torch.float32}
    a_matrix = next(n for n in shipped if "q_proj.lora_A" in n)
    ours = next(n for n in start if a_matrix.replace(".weight", "") in n)
    assert torch.allclose(start[ours], shipped[a_matrix].float())
    train_examples(model, fixed_examples(small_tasks[:1], default_tokenizer, config_with()), config)
    assert not torch.equal(trainable(model)[ours], start[ours])
    with pytest.raises(ConfigError, match="initial_adapter = '/nowhere': no adapter_config.json"):
        training_lora_rank(quick(initial_adapter="/nowhere"))


def test_embeddings_that_train_get_their_own_learning_rate(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    from arcsub.finetune.loop import parameter_groups

    full = AutoModelForCausalLM.from_pretrained(tiny_llama_path).requires_grad_(True)
    named = list(full.named_parameters())
    config = quick(method="full", embedding_lr_scale=0.1, learning_rate=1e-3, warmup_steps=0, lr_schedule="constant")
    rest, embedding = parameter_groups(named, config)
    embedded = {id(p) for n, p in named if "embed_tokens" in n or "lm_head" in n}
    assert {id(p) for p in embedding["params"]} == embedded and embedding["lr"] == pytest.approx(1e-4)
    assert len(rest["params"]) + len(embedding["params"]) == len(named)
    optimizer = torch.optim.AdamW(parameter_groups(named, config), lr=config.learning_rate)
    assert make_scheduler(optimizer, config, 10).get_last_lr() == pytest.approx([1e-3, 1e-4])
    # LoRA on the linear layers only: no embeddings train, one group
    lora = tiny_lora(tiny_llama_path)
    trained = [(n, p) for n, p in lora.named_parameters() if p.requires_grad]
    assert len(parameter_groups(trained, quick(embedding_lr_scale=0.1))) == 1
    # LoRA that names embed_tokens: its embedding matrices are the second group
    lora = tiny_lora(tiny_llama_path, target_modules=["q_proj", "embed_tokens"])
    trained = [(n, p) for n, p in lora.named_parameters() if p.requires_grad]
    rest, embedding = parameter_groups(trained, quick(embedding_lr_scale=0.1, learning_rate=1e-3))
    assert sorted(n.rsplit(".", 2)[-2] for n, p in trained if any(p is q for q in embedding["params"])) == [
        "lora_embedding_A",
        "lora_embedding_B",
    ]
    assert embedding["lr"] == pytest.approx(1e-4) and len(rest["params"]) == len(trained) - 2
