"""The candidate models named in the research this product follows, by their
published facts: no weights can be downloaded here, so the table is built from the
``config.json`` values each model publishes (copied key for key into
``candidates.toml``, data shipped beside this module) and a few tokenizer facts. Every derived column (parameters, KV cache, tensor parallelism, T4
fit) is computed from these values by :mod:`arcsub.models.config_facts`.

A key that is missing from a config there is unknown, and the table says so. Only
NanoLM-365M-Base has gaps: its card says it is Qwen2-0.5B with the tokenizer replaced
by an 8K one, so its backbone shape is Qwen2-0.5B's, while its vocabulary size, window
and RoPE theta were not checked.

``vllm`` records whether vLLM 0.32 serves the architecture (its model registry lists
the class; checked by a test against the installed vLLM). OpenELM is not in it: the
model runs only through its own remote code (``trust_remote_code``), which vLLM does
not load, so it cannot be the inference model here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArcsubError, ModelNotFoundError
from ..io import read_toml


@dataclass(frozen=True)
class TokenizerFacts:
    description: str
    chat_template: bool | None  # None: unknown
    bos: str | None = None
    eos: str | None = None
    pad: str | None = None  # "none": the tokenizer has no pad token
    special_tokens: tuple[str, ...] = ()  # strings the replicas register


@dataclass(frozen=True)
class CandidateModel:
    name: str
    repo: str  # Hugging Face repository
    config: dict[str, Any]  # published config.json values (missing key = unknown)
    tokenizer: TokenizerFacts
    published_params: str  # as the model card or name states it
    vllm: bool  # vLLM 0.32 serves this architecture without remote code
    notes: str = ""
    unknown: tuple[str, ...] = field(default=())  # config keys known to be unverified

    @property
    def architecture(self) -> str:
        return self.config["architectures"][0]


CANDIDATES_FILE = Path(__file__).with_name("candidates.toml")  # shipped as package data
_CANDIDATE_KEYS = {"name", "repo", "published_params", "vllm", "notes", "unknown", "null", "tokenizer", "config"}


class RegistryError(ArcsubError):
    """The candidates file does not hold what the registry reads."""


def read_candidates(path: str | os.PathLike = CANDIDATES_FILE) -> tuple[CandidateModel, ...]:
    """The candidates of a ``candidates.toml`` (the shipped one by default), checked:
    an unknown key, a missing one or a tokenizer that is not defined names the file,
    the candidate and the key."""
    data = read_toml(path, RegistryError, fix="restore the file that ships with arcsub")
    shared = data.get("tokenizers", {})
    candidates = []
    for index, entry in enumerate(data.get("candidate", [])):
        where = f"{path}: candidate {entry.get('name', index)!r}"
        unknown = sorted(set(entry) - _CANDIDATE_KEYS)
        if unknown:
            raise RegistryError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CANDIDATE_KEYS))}"
            )
        try:
            tokenizer = entry["tokenizer"]
            if isinstance(tokenizer, str):
                if tokenizer not in shared:
                    raise RegistryError(f"{where}: tokenizer {tokenizer!r} is not one of [tokenizers.*]")
                tokenizer = shared[tokenizer]
            config = dict(entry["config"]) | dict.fromkeys(entry.get("null", ()))
            candidates.append(
                CandidateModel(
                    name=entry["name"],
                    repo=entry["repo"],
                    config=config,
                    tokenizer=_tokenizer_facts(tokenizer),
                    published_params=entry["published_params"],
                    vllm=entry["vllm"],
                    notes=entry.get("notes", ""),
                    unknown=tuple(entry.get("unknown", ())),
                )
            )
        except KeyError as exc:
            raise RegistryError(f"{where}: {exc.args[0]} is missing") from None
        except TypeError as exc:
            raise RegistryError(f"{where}: {exc}") from None
    return tuple(candidates)


def _tokenizer_facts(values: dict) -> TokenizerFacts:
    values = dict(values)
    values["special_tokens"] = tuple(values.get("special_tokens", ()))
    return TokenizerFacts(**{"chat_template": None, **values})


CANDIDATES: tuple[CandidateModel, ...] = read_candidates()

DEFAULT_CANDIDATE = "SmolLM2-135M-Instruct"


def candidate_names() -> list[str]:
    return [c.name for c in CANDIDATES]


def get_candidate(name: str) -> CandidateModel:
    for candidate in CANDIDATES:
        if candidate.name.lower() == name.lower():
            return candidate
    raise ModelNotFoundError(
        f"{name}: not a model folder nor a registered candidate; candidates: {', '.join(candidate_names())}"
    )


def is_candidate(name: str) -> bool:
    return any(c.name.lower() == name.lower() for c in CANDIDATES)
