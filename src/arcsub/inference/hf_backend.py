"""The transformers backend: the same interface as the vLLM one, for machines without
vLLM and for cross-checks (greedy outputs of both must agree).

Generation is batched with left padding, grouped by (adapter, sampling settings);
depth-first sampling (``min_prob``) walks one prompt at a time (``dfs.py``);
adapters are ``peft`` adapters loaded once each and switched per group. Log-
probabilities come from the raw logits (``output_logits``), as vLLM's
``raw_logprobs``, so both backends report the same numbers for the same tokens.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..config import InferenceConfig
from ..console import progress_bar
from ..hardware import device_dtype
from .backend import Completion, GenerationRequest, ScoreRequest
from .dfs import threshold_search


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        config: InferenceConfig | None = None,
        adapters: Sequence[str] = (),
        *,
        batch_size: int = 8,
        device: str | None = None,
        progress: bool = True,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or InferenceConfig()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.progress = progress
        self.deadline: float | None = None  # generation stops there (transformers' max_time)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        dtype = getattr(torch, device_dtype(self.config.dtype))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.adapter_names: dict[str, str] = {}
        for path in dict.fromkeys(str(Path(a)) for a in adapters):
            model = self._load_adapter(model, path)
        self.model = model
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = self._eos_ids()

    def _load_adapter(self, model, path: str):
        from peft import PeftModel

        self.loaded = getattr(self, "loaded", 0) + 1
        name = f"adapter-{self.loaded}"
        if not self.adapter_names:
            model = PeftModel.from_pretrained(model, path, adapter_name=name)
        else:
            model.load_adapter(path, adapter_name=name)
        self.adapter_names[path] = name
        return model.eval()

    def attention_backends(self) -> list[str]:
        """The attention implementation transformers runs (``sdpa``, ``eager``, ...)."""
        implementation = getattr(self.model.config, "_attn_implementation", None)
        return [implementation] if implementation else []

    def add_adapter(self, path: str) -> None:
        if str(Path(path)) not in self.adapter_names:
            self.model = self._load_adapter(self.model, str(Path(path)))

    def release_adapter(self, path: str) -> None:
        name = self.adapter_names.get(str(Path(path)))
        others = [n for n in self.adapter_names.values() if n != name]
        if name is None or not others:
            return  # peft keeps at least one adapter on a PeftModel; one unused one is cheap
        self.model.set_adapter(others[0])
        self.model.delete_adapter(name)
        del self.adapter_names[str(Path(path))]

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _with_adapter(self, adapter: str | None):
        """A context in which the model runs with ``adapter`` (or with none)."""
        from contextlib import nullcontext

        if not self.adapter_names:
            if adapter is not None:
                raise ValueError(f"{adapter}: adapter was not declared when the backend was built")
            return nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(self.adapter_names[str(Path(adapter))])
        return nullcontext()

    # ------------------------------------------------------------ generate

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results: list[list[Completion] | None] = [None] * len(requests)
        groups, depth_first = defaultdict(list), []
        for index, r in enumerate(requests):
            if r.min_prob > 0:
                depth_first.append(index)
            else:
                groups[(r.adapter, r.n, r.temperature, r.min_p, r.max_tokens, r.seed)].append(index)
        with progress_bar(total=len(requests), desc="sampling", unit="prompt", enabled=self.progress) as bar:
            for index in depth_first:
                results[index] = self._depth_first(requests[index])
                bar.update(1)
            for (adapter, n, temperature, min_p, max_tokens, seed), indices in groups.items():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    prompts = [requests[i].prompt_ids for i in chunk]
                    batch = self._generate_batch(prompts, adapter, n, temperature, min_p, max_tokens, seed)
                    for i, completions in zip(chunk, batch, strict=True):
                        results[i] = completions
                    bar.update(len(chunk))
        return results

    def _generate_batch(self, prompts, adapter, n, temperature, min_p, max_tokens, seed) -> list[list[Completion]]:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # Plain sampling at the given temperature, as vLLM does (no top-k/top-p from generation_config).
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        if temperature > 0 and min_p > 0:
            sampling["min_p"] = min_p
        if seed is not None:
            torch.manual_seed(seed)
        if self.deadline is not None:  # answers cut here are unparseable: fewer predictions, no wrong ones
            sampling["max_time"] = max(0.1, self.deadline - time.time())
        with torch.no_grad(), self._with_adapter(adapter):
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                **sampling,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                output_logits=True,
                return_dict_in_generate=True,
            )
        new_tokens = out.sequences[:, width:]
        # logits: one (batch*n, vocab) tensor per generated position
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
        chosen = logprobs.gather(-1, new_tokens[:, : logprobs.shape[1]].unsqueeze(-1)).squeeze(-1)
        batch: list[list[Completion]] = [[] for _ in prompts]
        for row in range(new_tokens.shape[0]):
            tokens = new_tokens[row].tolist()
            end = next((k + 1 for k, t in enumerate(tokens) if t in self.eos_ids), None)
            kept = tokens[:end] if end else tokens
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            completion = Completion(
                text, tuple(kept), tuple(chosen[row, : len(kept)].tolist()), "stop" if end else "length"
            )
            batch[row // n].append(completion)
        return batch

    def _depth_first(self, request: GenerationRequest) -> list[Completion]:
        """Every completion above ``request.min_prob``, most likely first (``dfs.py``)."""
        with self._with_adapter(request.adapter):
            found = threshold_search(
                self.model, request.prompt_ids, min_prob=request.min_prob, max_tokens=request.max_tokens,
                eos_ids=self.eos_ids, device=self.device, deadline=self.deadline, keep_greedy=request.keep_greedy,
            )  # fmt: skip
        return [
            Completion(
                self.tokenizer.decode(branch.tokens, skip_special_tokens=True),
                tuple(branch.tokens),
                tuple(branch.logprobs),
                "stop" if ended else "length",
            )
            for branch, ended in found
        ]

    # ------------------------------------------------------------ score

    def score(self, requests: Sequence[ScoreRequest]) -> list[tuple[float, ...]]:
        results: list[tuple[float, ...] | None] = [None] * len(requests)
        groups = defaultdict(list)
        for index, r in enumerate(requests):
            groups[r.adapter].append(index)
        with progress_bar(total=len(requests), desc="scoring", unit="answer", enabled=self.progress) as bar:
            for adapter, indices in groups.items():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    for i, scores in zip(chunk, self._score_batch([requests[i] for i in chunk], adapter), strict=True):
                        results[i] = scores
                    bar.update(len(chunk))
        return results

    def _score_batch(self, requests: Sequence[ScoreRequest], adapter) -> list[tuple[float, ...]]:
        import torch

        sequences = [list(r.prompt_ids) + list(r.answer_ids) for r in requests]
        width = max(len(s) for s in sequences)
        ids = torch.tensor([s + [self.pad_id] * (width - len(s)) for s in sequences], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=self.device)
        with torch.no_grad(), self._with_adapter(adapter):
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = logits.log_softmax(-1)
        scores = []
        for row, r in enumerate(requests):
            start = len(r.prompt_ids)
            # the token at position p is predicted by the logits at p - 1
            positions = torch.arange(start - 1, start - 1 + len(r.answer_ids), device=self.device)
            targets = torch.tensor(r.answer_ids, device=self.device)
            scores.append(tuple(logprobs[row, positions, targets].tolist()))
        return scores

    def close(self) -> None:
        self.model = None
