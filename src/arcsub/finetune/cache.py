"""Pre-tokenized training prompts, cached with the ``datasets`` library.

With ``finetune.variants = K`` an offline run does not build prompts while it trains:
K augmented leave-one-out prompts per task (the same ``LeaveOneOut.draw`` as the
on-the-fly path, each from its own generator) are tokenized once into an Arrow file,
opened memory-mapped as a ``datasets.Dataset``, and drawn from by the loop:
a weighted source, a task, one of its K variants (``CachedPrompts``).

The cache lives in ``<cache>/finetune-data/<key>/`` (``prompts.arrow``, ``meta.json``;
``<cache>`` is arcsub's cache root: ``$ARCSUB_CACHE_DIR``, ``$XDG_CACHE_HOME/arcsub`` or
``~/.cache/arcsub``). The key hashes everything that changes the tokens: the training
tasks' content (after the validation tasks are held out), the prompt and augmentation
settings, ``learn_outputs``, ``use_test_outputs``, ``pairs_per_prompt``, the sequence
budget, the seed, K, the tokenizer (vocabulary, merges, chat template) and the cache
format. Source weights are not in it: they change the draw, not the tokens. A run with
the same key reuses the folder (and says so); it is written atomically under a file
lock, so two runs, or the processes of one ``accelerate launch``, never build it twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import Config
from ..console import progress_bar
from ..io import atomic_dir, exclusive_lock, write_json_atomic
from ..models import cache_root
from ..prompts import TokenizedPrompt
from .data import LeaveOneOut
from .mixture import Mixture
from .sources import Source

log = logging.getLogger("arcsub.finetune")

CACHE_FORMAT = 1  # bump when what a row holds, or how a variant is drawn, changes
DATA_FILE = "prompts.arrow"
META_FILE = "meta.json"


def default_cache_dir() -> Path:
    return cache_root() / "finetune-data"


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what turns text into ids: vocabulary and merges, specials, template."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([tokenizer.chat_template, tokenizer.eos_token, tokenizer.bos_token], default=str).encode())
    return h.hexdigest()


def cache_key(sources: Sequence[Source], config: Config, tokenizer, max_seq_len: int) -> str:
    ft = config.finetune
    payload = {
        "format": CACHE_FORMAT,
        "sources": [source.digest for source in sources],
        "prompt": asdict(config.prompt),
        "augment": asdict(config.augment),
        "learn_outputs": ft.learn_outputs,
        "use_test_outputs": ft.use_test_outputs,
        "pairs_per_prompt": ft.pairs_per_prompt,
        "max_seq_len": max_seq_len,
        "seed": ft.seed,
        "variants": ft.variants,
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def variant_rng(seed: int, source_digest: str, task_id: str, variant: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{source_digest}:{task_id}:{variant}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class PromptCache:
    folder: Path
    key: str
    dataset: object  # datasets.Dataset, memory-mapped
    meta: dict
    reused: bool
    seconds: float  # to build (0 when reused)

    def describe(self) -> dict:
        return {
            "key": self.key,
            "folder": str(self.folder),
            "reused": self.reused,
            "rows": len(self.dataset),
            "variants": self.meta["variants"],
            "build_seconds": round(self.seconds, 2),
        }


def open_cache(
    sources: Sequence[Source],
    make_sampler: Callable[[Source], LeaveOneOut],
    config: Config,
    tokenizer,
    max_seq_len: int,
    cache_dir: Path | None = None,
    *,
    progress: bool = True,
) -> PromptCache:
    """The cached prompts of ``sources``, built (samplers from ``make_sampler``) unless a
    folder with the same key exists."""
    folder_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(sources, config, tokenizer, max_seq_len)
    folder = folder_root / key
    started = time.time()
    with exclusive_lock(folder_root / f".{key}.lock"):
        reused = (folder / META_FILE).is_file()
        if not reused:
            _build(folder, sources, make_sampler, config.finetune.seed, config.finetune.variants, progress)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    return PromptCache(folder, key, _open(folder), meta, reused, 0.0 if reused else time.time() - started)


def _features():
    from datasets import Features, List, Value

    return Features(
        {
            "source": Value("int32"),
            "task": Value("string"),
            "variant": Value("int32"),
            "input_ids": List(Value("int32")),
            "labels": List(Value("int32")),
            "prompt_length": Value("int32"),
            "length": Value("int32"),
        }
    )


def _build(folder: Path, sources, make_sampler, seed: int, variants: int, progress: bool) -> None:
    from datasets.arrow_writer import ArrowWriter

    samplers = [make_sampler(source) for source in sources]
    total = sum(len(s) for s in samplers) * variants
    meta = {"format": CACHE_FORMAT, "variants": variants, "rows": total, "sources": []}
    row = 0
    with (
        atomic_dir(folder) as tmp,
        progress_bar(total=total, desc="tokenizing", unit="prompt", enabled=progress) as bar,
    ):
        writer = ArrowWriter(features=_features(), path=str(tmp / DATA_FILE))
        for index, (source, sampler) in enumerate(zip(sources, samplers)):
            digest = source.digest
            meta["sources"].append(
                {"source": str(source.spec), "digest": digest, "start": row, "tasks": sampler.task_ids,
                 "skipped": sampler.skipped}
            )  # fmt: skip
            for task_id in sampler.task_ids:
                drawn = [sampler.draw(task_id, variant_rng(seed, digest, task_id, k)) for k in range(variants)]
                writer.write_batch(
                    {
                        "source": [index] * variants,
                        "task": [task_id] * variants,
                        "variant": list(range(variants)),
                        "input_ids": [p.input_ids for p in drawn],
                        "labels": [p.labels for p in drawn],
                        "prompt_length": [p.prompt_length for p in drawn],
                        "length": [len(p.input_ids) for p in drawn],
                    }
                )
                row += variants
                bar.update(variants)
        writer.finalize()  # and closes the file
        write_json_atomic(tmp / META_FILE, meta, indent=1)


def _open(folder: Path):
    from datasets import Dataset

    return Dataset.from_file(str(folder / DATA_FILE))  # memory-mapped: rows are read when drawn


class CachedPrompts:
    """``(micro_step, rng) -> TokenizedPrompt``: one of the K stored variants of a task
    from a weighted source (``weights`` in the cache's source order)."""

    def __init__(self, cache: PromptCache, weights: Sequence[float]):
        entries = cache.meta["sources"]
        self.mixture = Mixture(weights, [entry["tasks"] for entry in entries])
        self.dataset, self.variants = cache.dataset, cache.meta["variants"]
        self.starts = [entry["start"] for entry in entries]
        self.positions = [{task_id: i for i, task_id in enumerate(entry["tasks"])} for entry in entries]

    def row(self, source: int, task_id: str, variant: int) -> int:
        return self.starts[source] + self.positions[source][task_id] * self.variants + variant

    def __call__(self, micro_step: int, rng: random.Random) -> TokenizedPrompt:
        source, task_id = self.mixture.pick(rng)
        variant = rng.randrange(self.variants) if self.variants > 1 else 0
        found = self.dataset[self.row(source, task_id, variant)]
        return TokenizedPrompt(found["input_ids"], found["labels"], found["prompt_length"])
