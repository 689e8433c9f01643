"""The two backends agree: greedy text, token ids and log-probabilities, with and
without a LoRA adapter, on real ARC prompts and the real default model."""

import pytest

from arcsub.config import PromptConfig
from arcsub.inference.backend import GenerationRequest, ScoreRequest
from arcsub.prompts import PromptBuilder

SMALL_TASKS = "arc1/evaluation[66e6c45b,be03b35f,00576224]"


@pytest.fixture(scope="module")
def arc_prompts(default_tokenizer):
    from arcsub.tasks import load_tasks

    builder = PromptBuilder(PromptConfig(), default_tokenizer)
    return [builder.fit(task, with_answer=False).token_ids for task in load_tasks(SMALL_TASKS)]


@pytest.mark.parametrize("use_adapter", [False, True], ids=["base", "lora"])
def test_greedy_outputs_agree(vllm_backend, hf_backend, arc_prompts, random_lora_path, use_adapter):
    adapter = str(random_lora_path) if use_adapter else None
    requests = [GenerationRequest(ids, n=1, max_tokens=24, temperature=0.0, adapter=adapter) for ids in arc_prompts]
    from_vllm = vllm_backend.generate(requests)
    from_hf = hf_backend.generate(requests)
    for v, h in zip(from_vllm, from_hf, strict=True):
        assert v[0].token_ids == h[0].token_ids
        assert v[0].text == h[0].text
        assert v[0].finish_reason == h[0].finish_reason
        assert v[0].logprobs == pytest.approx(h[0].logprobs, abs=2e-3)


def test_the_adapter_changes_the_output(vllm_backend, arc_prompts, random_lora_path):
    base = vllm_backend.generate([GenerationRequest(ids, max_tokens=16) for ids in arc_prompts])
    answers = [ScoreRequest(ids, gen[0].token_ids) for ids, gen in zip(arc_prompts, base, strict=True)]
    plain = vllm_backend.score(answers)
    tuned = vllm_backend.score([ScoreRequest(r.prompt_ids, r.answer_ids, str(random_lora_path)) for r in answers])
    biggest = max(abs(p - t) for ps, ts in zip(plain, tuned, strict=True) for p, t in zip(ps, ts, strict=True))
    assert biggest > 0.05
    # one batch that mixes the adapter and the base model gives what separate batches give
    mixed = vllm_backend.score(
        [answers[0], ScoreRequest(answers[1].prompt_ids, answers[1].answer_ids, str(random_lora_path))]
    )
    assert mixed[0] == pytest.approx(plain[0], abs=1e-4) and mixed[1] == pytest.approx(tuned[1], abs=1e-4)
    lora_requests = [GenerationRequest(ids, max_tokens=16, adapter=str(random_lora_path)) for ids in arc_prompts]
    alone = vllm_backend.generate(lora_requests[:1])
    together = vllm_backend.generate([GenerationRequest(arc_prompts[1], max_tokens=16), lora_requests[0]])
    assert together[1][0].token_ids == alone[0][0].token_ids
    assert together[0][0].token_ids == base[1][0].token_ids


def test_scores_agree_and_match_generation(vllm_backend, hf_backend, arc_prompts, random_lora_path):
    generated = vllm_backend.generate([GenerationRequest(ids, max_tokens=12) for ids in arc_prompts])
    requests = [
        ScoreRequest(ids, gen[0].token_ids, adapter)
        for ids, gen in zip(arc_prompts, generated, strict=True)
        for adapter in (None, str(random_lora_path))
    ]
    from_vllm = vllm_backend.score(requests)
    from_hf = hf_backend.score(requests)
    for v, h, request in zip(from_vllm, from_hf, requests, strict=True):
        assert len(v) == len(request.answer_ids)
        assert v == pytest.approx(h, abs=2e-3)
    # scoring a greedy answer reads back the log-probabilities generation reported
    for gen, scores in zip(generated, from_vllm[::2], strict=True):
        assert scores == pytest.approx(gen[0].logprobs, abs=2e-3)


def test_an_adapter_on_the_embeddings_is_served_alike(
    vllm_backend, hf_backend, arc_prompts, default_model_path, tmp_path_factory
):
    """finetune.target_modules may name embed_tokens: both backends serve that LoRA, the
    same way, and its embedding part counts (vLLM does not drop it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=8, target_modules=["embed_tokens"], init_lora_weights=False)
    path = str(tmp_path_factory.mktemp("embedding-lora"))
    get_peft_model(model, lora).save_pretrained(path)
    prompts = arc_prompts[:2]
    answers = vllm_backend.generate([GenerationRequest(ids, max_tokens=8) for ids in prompts])
    plain = [ScoreRequest(ids, gen[0].token_ids) for ids, gen in zip(prompts, answers, strict=True)]
    tuned = [ScoreRequest(r.prompt_ids, r.answer_ids, path) for r in plain]
    for backend in (vllm_backend, hf_backend):
        backend.add_adapter(path)
    from_vllm, from_hf = vllm_backend.score(tuned), hf_backend.score(tuned)
    for v, h in zip(from_vllm, from_hf, strict=True):
        assert v == pytest.approx(h, abs=2e-3)
    base = vllm_backend.score(plain)
    assert max(abs(sum(t) - sum(b)) for t, b in zip(from_vllm, base, strict=True)) > 0.05
    for backend in (vllm_backend, hf_backend):
        backend.release_adapter(path)


def test_sampling_returns_n_completions(vllm_backend, hf_backend, arc_prompts):
    request = GenerationRequest(arc_prompts[0], n=3, max_tokens=8, temperature=1.0, seed=7)
    for backend in (vllm_backend, hf_backend):
        (completions,) = backend.generate([request])
        assert len(completions) == 3
        assert all(len(c.logprobs) == len(c.token_ids) > 0 for c in completions)


def test_a_deadline_cuts_engine_calls_into_pieces_and_stops_them(tiny_llama_path):
    """Behind DeadlineBackend, no piece starts that would end after the deadline: cut
    generation returns no completions for the requests left, cut scoring raises."""
    import time

    from arcsub.config import InferenceConfig
    from arcsub.inference.backend import GenerationRequest, ScoreRequest
    from arcsub.inference.deadline import DeadlineBackend, DeadlineReached
    from arcsub.inference.hf_backend import TransformersBackend

    backend = TransformersBackend(tiny_llama_path, InferenceConfig(), progress=False)
    requests = [GenerationRequest(prompt_ids=(1, 2, 3 + i), max_tokens=4) for i in range(5)]
    roomy = DeadlineBackend(backend, time.time() + 3600, piece=2)
    assert backend.deadline == roomy.deadline  # transformers can also stop inside a call
    assert all(len(c) == 1 for c in roomy.generate(requests)) and not roomy.cut
    assert len(roomy.score([ScoreRequest(prompt_ids=(1, 2), answer_ids=(3,))] * 3)) == 3
    # what finished is counted, for the kernel's plan: 5 prompts and 3 answers, with their time
    assert [roomy.work[op][0] for op in ("generate", "score")] == [5, 3]
    assert all(roomy.work[op][1] > 0 for op in ("generate", "score"))
    roomy.rate["generate"] = 7200.0  # a request now "takes" longer than the time left
    assert roomy.generate(requests) == [[]] * 5 and roomy.cut
    assert len(roomy.score([ScoreRequest(prompt_ids=(1, 2), answer_ids=(3,))])) == 1  # scoring's pieces are short
    roomy.rate["score"] = 7200.0
    with pytest.raises(DeadlineReached):
        roomy.score([ScoreRequest(prompt_ids=(1, 2), answer_ids=(3,))])
    assert [roomy.work[op][0] for op in ("generate", "score")] == [5, 4]  # cut pieces add nothing
    roomy.detach()
    assert backend.deadline is None


def test_a_measured_rate_sizes_the_first_piece_and_shrinks_pieces_near_the_deadline(tiny_llama_path):
    """The rate measured before the call (the kernel's worker measures it at start)
    keeps the first piece from starting blind: 100 s left at 10 s per request is a
    piece of 2 (a quarter of the time left); at 120 s per request none fits. The call's
    own measurement then takes over."""
    import time

    from arcsub.config import InferenceConfig
    from arcsub.inference.deadline import DeadlineBackend
    from arcsub.inference.hf_backend import TransformersBackend

    backend = TransformersBackend(tiny_llama_path, InferenceConfig(), progress=False)
    soon = DeadlineBackend(backend, time.time() + 100, piece=8, expected={"generate": 10.0})
    assert soon.piece_size("generate") == 2 and soon.piece_size("score") == 8
    blind = DeadlineBackend(backend, time.time() + 100, piece=8, expected={"generate": 120.0})
    requests = [GenerationRequest(prompt_ids=(1, 2, 3), max_tokens=4)]
    assert blind.generate(requests) == [[]] and blind.cut  # one request would end after the deadline
    # once a piece is measured, its rate replaces the one brought in (priced from other
    # tasks' sizes): the tiny model's requests take far less than 40 s, so the next piece
    # is full where the 40 s rate gave pieces of one
    priced = DeadlineBackend(backend, time.time() + 100, piece=8, expected={"generate": 40.0})
    assert priced.piece_size("generate") == 1
    assert all(len(c) == 1 for c in priced.generate(requests * 3)) and not priced.cut
    assert priced.rate["generate"] < 40.0 and priced.piece_size("generate") == 8


def test_min_p_keeps_only_tokens_near_the_likeliest(vllm_backend, hf_backend, arc_prompts):
    """At a high temperature, min_p = 0.95 leaves only tokens almost as likely as the top
    one: every sample is the greedy answer, on both backends."""
    greedy = vllm_backend.generate([GenerationRequest(arc_prompts[0], max_tokens=8)])[0][0]
    request = GenerationRequest(arc_prompts[0], n=4, max_tokens=8, temperature=2.0, min_p=0.95, seed=3)
    for backend in (vllm_backend, hf_backend):
        (completions,) = backend.generate([request])
        assert [c.token_ids for c in completions] == [greedy.token_ids] * 4


def test_depth_first_sampling_finds_every_completion_above_the_threshold(hf_backend, arc_prompts):
    """Each completion found has probability >= min_prob, with the log-probabilities a
    full forward pass gives; the greedy answer is among them when it qualifies; with one
    token to go, the set is exactly the tokens above the threshold."""
    import math

    import torch

    prompt = arc_prompts[0]
    greedy = hf_backend.generate([GenerationRequest(prompt, max_tokens=6)])[0][0]
    found = hf_backend.generate([GenerationRequest(prompt, max_tokens=6, min_prob=0.02)])[0]
    assert len(found) > 1 and all(sum(c.logprobs) >= math.log(0.02) for c in found)
    assert [sum(c.logprobs) for c in found] == sorted((sum(c.logprobs) for c in found), reverse=True)
    assert sum(math.exp(sum(c.logprobs)) for c in found) <= 1 + 1e-6
    assert len({c.token_ids for c in found}) == len(found) <= 50
    if sum(greedy.logprobs) >= math.log(0.02):
        assert greedy.token_ids in {c.token_ids for c in found}
    rescored = hf_backend.score([ScoreRequest(prompt, c.token_ids) for c in found])
    for completion, scores in zip(found, rescored, strict=True):
        assert completion.logprobs == pytest.approx(scores, abs=2e-3)
    with torch.no_grad(), hf_backend._with_adapter(None):  # the base model, as the requests ask
        first = hf_backend.model(input_ids=torch.tensor([list(prompt)])).logits[0, -1].float().log_softmax(-1)
    above = {t for t in range(first.shape[0]) if first[t] >= math.log(0.001)}
    one_token = hf_backend.generate([GenerationRequest(prompt, max_tokens=1, min_prob=0.001)])[0]
    assert {c.token_ids[0] for c in one_token} == above
    # a threshold nothing reaches: nothing, unless the greedy completion is kept
    assert hf_backend.generate([GenerationRequest(prompt, max_tokens=24, min_prob=0.99)])[0] == []
    (kept,) = hf_backend.generate([GenerationRequest(prompt, max_tokens=24, min_prob=0.99, keep_greedy=True)])[0]
    long_greedy = hf_backend.generate([GenerationRequest(prompt, max_tokens=24)])[0][0]
    assert kept.token_ids == long_greedy.token_ids and kept.logprobs == pytest.approx(long_greedy.logprobs, abs=2e-3)


def test_depth_first_sampling_is_refused_where_it_cannot_run(vllm_backend, arc_prompts):
    from arcsub.config import InferenceConfig
    from arcsub.errors import ConfigError
    from arcsub.inference.vllm_backend import EngineConfigError

    with pytest.raises(EngineConfigError, match="transformers backend"):
        vllm_backend.generate([GenerationRequest(arc_prompts[0], min_prob=0.1)])
    with pytest.raises(ConfigError, match="dfs_min_prob needs backend = 'transformers'"):
        InferenceConfig(dfs_min_prob=0.1)
    assert InferenceConfig(backend="transformers", dfs_min_prob=0.1).dfs_min_prob == 0.1


def test_adapter_ids_and_names_are_never_reused(vllm_backend, random_lora_path, tmp_path):
    """vLLM 0.19.1 keys prefix-cache blocks by the LoRA name alone: a later task's
    adapter must never get an earlier one's id or name, nor the same folder retrained."""
    import shutil

    other = tmp_path / "other-task"
    shutil.copytree(random_lora_path, other)
    first = tmp_path / "first-task"
    shutil.copytree(random_lora_path, first)
    vllm_backend.add_adapter(str(first))
    before = vllm_backend.lora_request(str(first))
    vllm_backend.release_adapter(str(first))
    vllm_backend.add_adapter(str(other))
    after = vllm_backend.lora_request(str(other))
    vllm_backend.add_adapter(str(other))  # declared again (retrained in place): a new id
    again = vllm_backend.lora_request(str(other))
    ids = [before.lora_int_id, after.lora_int_id, again.lora_int_id]
    names = [before.lora_name, after.lora_name, again.lora_name]
    assert len(set(ids)) == 3 and len(set(names)) == 3, (ids, names)
    vllm_backend.release_adapter(str(other))


def test_the_attention_backend_is_an_engine_argument_below_capability_8(default_model_path):
    from arcsub.config import InferenceConfig
    from arcsub.inference.vllm_backend import attention_backend_for, engine_kwargs
    from arcsub.kernel.stack import engine_environment

    assert attention_backend_for((7, 5)) == "TRITON_ATTN"  # T4
    assert attention_backend_for((8, 9)) is None and attention_backend_for(None) is None  # L4; CPU
    t4 = engine_kwargs(default_model_path, InferenceConfig(), [], capability=(7, 5))
    assert t4["attention_backend"] == "TRITON_ATTN" and "kv_cache_memory_bytes" not in t4
    assert "attention_backend" not in engine_kwargs(default_model_path, InferenceConfig(), [], capability=(8, 9))
    # vLLM 0.19.1 ignores this variable; the kernel no longer relies on it
    assert "VLLM_ATTENTION_BACKEND" not in engine_environment("7.5")


def test_the_engine_says_which_attention_backend_it_runs(vllm_backend):
    assert vllm_backend.attention_backends() == ["CPU_ATTN"]
