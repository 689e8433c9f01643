"""``arcsub model check-fp16``: will this model survive fp16 inference on a T4?

T4 GPUs have no bfloat16, so the kernel runs the model in fp16, whose largest finite
value is 65504. A model trained in bf16 can carry activations past that: in fp16 they
become inf, then NaN logits and empty predictions. This check runs the same ARC
prompts in fp32 (the reference) and in fp16 and reports non-finite logits, the
largest logit difference, how often the next-token choice agrees, and the largest
activation the fp32 run produced (the headroom to 65504).

How fp16 runs:
* ``native``: the model converted with ``.half()``, on the GPU when there is one,
  else on the CPU (PyTorch supports fp16 on CPU, but without hardware support it
  can be many times slower than fp32).
* ``emulated``: fp32 arithmetic with fp16 storage: every weight rounded to fp16 and
  every module's output cast to fp16 and back, so values past 65504 turn into inf
  and rounding happens at each layer boundary, as in fp16 inference with fp32
  accumulation (what T4 tensor cores do). It misses overflow inside a single fused
  kernel, which fp32-accumulating kernels avoid anyway.
* ``auto`` (default): native on a GPU; on a CPU, a short probe runs both precisions
  and native is used unless it fails or is more than 4 times slower than fp32.
The report says which method ran and why.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ..config import PromptConfig
from ..console import progress_bar
from ..errors import ConfigError, ModelPreparationError
from ..models import FP16_MAX, load_tokenizer, model_folder
from ..prompts import PromptBuilder, PromptTooLong
from ..tasks import load_tasks

METHODS = ("auto", "native", "emulated")
SLOWDOWN_LIMIT = 4.0  # native CPU fp16 slower than this × fp32: emulate instead


@dataclass
class Fp16Report:
    method: str
    reason: str
    device: str
    prompts: int
    tokens: int
    nonfinite_logits: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    argmax_agreement: float
    max_abs_activation: float  # fp32 run, at module outputs
    max_abs_weight: float

    @property
    def overflow(self) -> bool:
        return self.nonfinite_logits > 0 or self.max_abs_activation >= FP16_MAX or self.max_abs_weight >= FP16_MAX

    def lines(self) -> list[str]:
        verdict = "OVERFLOW: do not run this model in fp16" if self.overflow else "ok for fp16"
        return [
            f"method: {self.method} on {self.device} ({self.reason})",
            f"prompts: {self.prompts} ({self.tokens} tokens)",
            f"non-finite fp16 logits: {self.nonfinite_logits}",
            f"largest |logit difference| fp16 vs fp32: {self.max_abs_logit_diff:.4g} "
            f"(mean {self.mean_abs_logit_diff:.3g})",
            f"next-token agreement fp16 vs fp32: {100 * self.argmax_agreement:.2f}%",
            f"largest |activation| (fp32): {self.max_abs_activation:.4g} of fp16's {FP16_MAX:g}",
            f"largest |weight|: {self.max_abs_weight:.4g}",
            f"verdict: {verdict}",
        ]


@contextmanager
def _hooks(model, hook):
    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _tensors(output):
    import torch

    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                yield item


class _ActivationRange:
    """Forward hook: the largest |value| any module outputs."""

    def __init__(self):
        self.largest = 0.0

    def __call__(self, module, inputs, output):
        for tensor in _tensors(output):
            if tensor.is_floating_point() and tensor.numel():
                self.largest = max(self.largest, float(tensor.detach().abs().max()))


def _round_through_fp16(module, inputs, output):
    """Forward hook: store every floating output in fp16 (overflow -> inf)."""
    import torch

    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.half().float()
    if isinstance(output, tuple):
        return tuple(t.half().float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in output)
    return output


def emulated_fp16_copy(model):
    """An fp32 copy whose weights are rounded to fp16 values."""
    import torch

    clone = copy.deepcopy(model)
    with torch.no_grad():
        for param in clone.parameters():
            param.copy_(param.half().float())
    return clone


def _forward_seconds(model, ids) -> float:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        model(ids)
    return time.perf_counter() - start


def choose_method(model, half, requested: str, device: str, vocab: int) -> tuple[str, str]:
    """Return (method, why); ``half`` is an fp16 copy of ``model`` for the CPU probe."""
    import torch

    if requested != "auto":
        return requested, "asked for"
    if device != "cpu":
        return "native", "GPU"
    probe = torch.randint(0, vocab, (1, 64))
    try:
        fp32_time = _forward_seconds(model, probe)
        fp16_time = _forward_seconds(half, probe)
    except (RuntimeError, NotImplementedError) as exc:
        return "emulated", f"native fp16 failed on this CPU: {str(exc).splitlines()[0]}"
    slowdown = fp16_time / max(fp32_time, 1e-6)
    if slowdown > SLOWDOWN_LIMIT:
        return "emulated", f"native fp16 was {slowdown:.1f}x slower than fp32 on this CPU"
    return "native", f"native fp16 runs on this CPU ({slowdown:.1f}x the fp32 time)"


def arc_prompt_ids(tokenizer, source: str, max_tokens: int, limit: int) -> list[list[int]]:
    """Token ids of up to ``limit`` ARC prompts with their answers, fitted to ``max_tokens``."""
    builder = PromptBuilder(PromptConfig(max_seq_len=max_tokens), tokenizer)
    ids = []
    for task in load_tasks(source).tasks:
        if len(ids) == limit:
            break
        try:
            ids.append(builder.tokenize(builder.fit(task, 0)).input_ids)
        except PromptTooLong:
            continue
    return ids


def check_fp16(
    model_path,
    *,
    source: str = "arc1/evaluation[:10]",
    max_tokens: int = 1024,
    prompts: int = 3,
    method: str = "auto",
    progress: bool = True,
) -> Fp16Report:
    """Run up to ``prompts`` ARC prompts from ``source`` in fp32 and fp16; see the module docstring."""
    import torch
    from transformers import AutoModelForCausalLM

    model_path = model_folder(model_path)
    tokenizer = load_tokenizer(model_path)
    prompt_ids = arc_prompt_ids(tokenizer, source, max_tokens, prompts)
    if not prompt_ids:
        raise ModelPreparationError(f"{source}: no task fits {max_tokens} tokens; raise `max_tokens`")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if method not in METHODS:
        raise ConfigError(f"`method` {method}: choose one of {', '.join(METHODS)}")
    reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    half = copy.deepcopy(reference).half() if method != "emulated" else None
    method, reason = choose_method(reference, half, method, device, len(tokenizer))
    if method == "native":
        candidate, rounding = half, None
    else:
        half = None  # free it before the emulated copy
        candidate, rounding = emulated_fp16_copy(reference), _round_through_fp16
    largest_weight = max(float(p.detach().abs().max()) for p in reference.parameters())

    activations = _ActivationRange()
    nonfinite, worst, total_diff, agree, positions = 0, 0.0, 0.0, 0, 0
    with progress_bar(total=len(prompt_ids), desc=f"check-fp16 ({method})", unit="prompt", enabled=progress) as bar:
        for ids in prompt_ids:
            batch = torch.tensor([ids], device=device)
            with torch.inference_mode():
                with _hooks(reference, activations):
                    want = reference(batch).logits.float()
                if rounding is None:
                    got = candidate(batch).logits.float()
                else:
                    with _hooks(candidate, rounding):
                        got = candidate(batch).logits.float()
            finite = torch.isfinite(got)
            nonfinite += int((~finite).sum())
            diff = (got - want).abs()[finite]
            if diff.numel():
                worst = max(worst, float(diff.max()))
                total_diff += float(diff.sum())
            agree += int((got.argmax(-1) == want.argmax(-1)).sum())
            positions += len(ids)
            bar.update(1)
    return Fp16Report(
        method=method,
        reason=reason,
        device=device,
        prompts=len(prompt_ids),
        tokens=positions,
        nonfinite_logits=nonfinite,
        max_abs_logit_diff=worst,
        mean_abs_logit_diff=total_diff / max(1, positions * want.shape[-1]),
        argmax_agreement=agree / max(1, positions),
        max_abs_activation=activations.largest,
        max_abs_weight=largest_weight,
    )
