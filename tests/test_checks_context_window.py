"""`arcsub model check-context`: synthetic prompts, exact scoring with cache reuse,
the real model's recall, the run with a theta copy and the fine-tuning engine, resume."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from arcsub.checks.context_prompts import SampleMaker, answer_text
from arcsub.checks.context_window import Settings, markdown_table, run_context_check, score_sample_set, write_outputs
from arcsub.cli import main
from arcsub.errors import PromptError


def test_samples_fit_their_targets_and_share_their_beginning(default_tokenizer):
    lengths = [256, 512, 1024]
    samples = SampleMaker(default_tokenizer).make(random.Random(3), lengths, "s")
    assert [s.target_tokens for s in samples] == lengths
    for sample in samples:
        assert sample.target_tokens * 0.8 < sample.prompt_tokens <= sample.target_tokens
        # The key and the answer format open the prompt, the question closes it.
        assert sample.prompt.prompt_text.startswith(f"<|im_start|>system\nThe key is {sample.key}.")
        assert sample.prompt.prompt_text.endswith("What is the key?<|im_end|>\n<|im_start|>assistant\n")
        assert default_tokenizer.decode(sample.answer_ids) == answer_text(sample.key)
        keys = [sample.answer_ids[i] for i in sample.key_positions]
        assert default_tokenizer.decode(keys) == sample.key  # offsets found exactly the key's digits
        assert sample.tokens.labels[-1] == default_tokenizer.eos_token_id  # training also learns to stop
    short, long = samples[0].tokens.input_ids, samples[-1].tokens.input_ids
    assert long[: samples[0].prompt_tokens - 30] == short[: samples[0].prompt_tokens - 30]


@pytest.mark.parametrize("name", ["SmolLM2-135M-Instruct", "TinyMistral-248M"])
def test_cache_reuse_scores_exactly_like_fresh_passes(replica, name, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arcsub.models.chat_template import add_chat_template

    path = replica(name)
    if name == "TinyMistral-248M":  # no template: the intended pipeline adds one first
        path = add_chat_template(path, tmp_path / "chat").destination
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    samples = SampleMaker(tokenizer).make(random.Random(0), [128, 256, 512], "s")
    reused = score_sample_set(model, samples, reuse_cache=True)
    fresh = score_sample_set(model, samples, reuse_cache=False)
    for target in reused:
        assert reused[target][:2] == fresh[target][:2]
        assert reused[target][2] == pytest.approx(fresh[target][2], abs=1e-3)


def test_a_model_without_chat_template_is_refused(replica):
    from transformers import AutoTokenizer

    with pytest.raises(PromptError, match="add-chat-template"):
        SampleMaker(AutoTokenizer.from_pretrained(replica("AMD-Llama-135m")))


def test_the_real_model_recalls_a_key_it_can_see(default_model_path, default_tokenizer):
    """Inside the window the task is easy: the key in the prompt is far more likely
    than the same sample's answer with another key."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32).eval()
    maker = SampleMaker(default_tokenizer)
    (sample,) = maker.make(random.Random(5), [200], "real")
    right = score_sample_set(model, [sample], reuse_cache=True)[200]
    other = "".join(str((int(d) + 5) % 10) for d in sample.key)  # every digit different
    # The same prompt (same length, same offsets) showing another key; the answer stays.
    shown = replace(
        sample.prompt, text=sample.prompt.text.replace(f"The key is {sample.key}.", f"The key is {other}.", 1)
    )
    assert shown.text != sample.prompt.text and shown.answer_text == sample.prompt.answer_text
    shown_other = replace(sample, prompt=shown, tokens=maker.builder.tokenize(shown))
    misled = score_sample_set(model, [shown_other], reuse_cache=True)[200]
    assert right[1] >= 3  # at least 3 of 4 key digits are the greedy choice
    assert right[2] + 1.0 < misled[2]  # the key shown is much likelier than another


def test_run_with_theta_copy_and_finetuning_then_resume(replica, tmp_path):
    from PIL import Image

    settings = Settings(
        model=str(replica("SmolLM2-135M-Instruct")),
        lengths=(128, 256),
        samples=2,
        finetune_steps=2,
        compare_rope_theta=4e5,
        learning_rate=1e-3,
        lora_rank=4,
    )
    out = tmp_path / "run"
    report = run_context_check(settings, out, progress=False)
    assert [v.label for v in report.variants] == ["as given", "theta 400000, window 8192"]
    assert report.variants[1].rope == "theta 400000"
    assert set(report.phases()) == {
        (v, p) for v in ("as given", "theta 400000, window 8192") for p in ("before", "after 2 steps")
    }
    assert len(report.scores) == 2 * 2 * 2 * 2  # variants x phases x samples x lengths
    assert all("2/2 steps" in note for note in report.train_notes)
    # Fine-tuning changed the model: the key likelihoods moved.
    before = [s.nll for s in report.scores if s.phase == "before"]
    after = [s.nll for s in report.scores if s.phase != "before"]
    assert before != after

    written = write_outputs(report, out)
    table = written["table"].read_text().splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| 128 |") and table[3].count("/2 (digits") == 4
    assert Image.open(written["plot"]).size[0] > 800
    lines = (out / "results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["settings"]["compare_rope_theta"] == 4e5 and len(lines) == 1 + 16
    assert not list(out.glob(".variants.*"))  # the theta copy is gone

    again = run_context_check(settings, out, progress=False)  # everything on disk: nothing re-run
    assert again.train_notes == [] and len((out / "results.jsonl").read_text().splitlines()) == 17
    assert not (out / "results.jsonl.old").exists()
    assert markdown_table(again) == markdown_table(report)


def test_check_context_cli(replica, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["model", "check-context", str(replica("Qwen2.5-0.5B-Instruct")), "--lengths", "96,192", "--samples", "1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| target tokens | prompt tokens (mean) | as given (before) |" in printed
    assert (out / "accuracy.png").is_file() and (out / "table.md").is_file()
    with pytest.raises(SystemExit):
        main(["model", "check-context", "default", "--lengths", "1024,abc"])
    assert "give token counts" in capsys.readouterr().err


def test_settings_are_checked():
    from arcsub.errors import ConfigError

    with pytest.raises(ConfigError, match="`samples` 0"):
        Settings(model="default", lengths=(1024,), samples=0)
    with pytest.raises(ConfigError, match="`lengths`"):
        Settings(model="default", lengths=(), samples=1)
