"""``arcsub model check-context``: can the model use its whole context window?

For K samples (:mod:`arcsub.checks.context_prompts`: a key at the very beginning,
distraction up to a target length, the question at the end) and each target length,
score whether greedy decoding would answer exactly the key. Scoring is one
teacher-forced forward pass over the answer "The key is NNNN.": greedy decoding
writes a token if and only if it is the argmax given what precedes it, so the argmax
at each answer position decides, without generating, whether the key is recalled
exactly (every key digit is the greedy choice after "The key is ": the headline
accuracy), how many key digits are, whether the whole sentence is exactly what
greedy decoding writes (stricter: it also scores the model's phrasing), and the key
tokens' mean negative log-likelihood.

The prompts of one sample share their beginning, so the longest is run once and its
KV cache is cut back and reused for the shorter ones (exact, by causality; skipped
for sliding-window models, whose caches cannot be cut back).

Variants: the model as given and, with ``--compare-rope-theta T``, a copy made by
``extend-context`` with RoPE base T and a window covering the longest length. With
``--finetune-steps N``, each variant is then LoRA-fine-tuned on this task at the
longest length by the fine-tuning engine (:mod:`arcsub.finetune`) and scored again.

Results go to ``OUT/results.jsonl`` one line per scored sample as they come (a rerun
with the same settings skips what is there), then ``table.md`` and ``accuracy.png``.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import FinetuneConfig
from ..console import progress_bar
from ..errors import ConfigError
from ..finetune import attach_lora, train_examples
from ..hardware import device_dtype
from ..io import write_text_atomic
from ..models import config_facts as facts
from ..models import extend_context, load_tokenizer, model_folder, model_window, read_config
from .context_prompts import ContextSample, SampleMaker


@dataclass(frozen=True)
class Settings:
    model: str  # a model folder (the command line resolves names such as default)
    lengths: tuple[int, ...]
    samples: int
    seed: int = 0
    finetune_steps: int = 0
    compare_rope_theta: float | None = None
    learning_rate: float = 1e-4
    lora_rank: int = 16

    def __post_init__(self):
        if not self.lengths or min(self.lengths) < 16:
            raise ConfigError(f"`lengths` {list(self.lengths)}: give token counts of at least 16")
        if self.samples < 1:
            raise ConfigError(f"`samples` {self.samples}: must be at least 1")
        if self.finetune_steps < 0:
            raise ConfigError(f"`finetune_steps` {self.finetune_steps}: must not be negative")
        if self.compare_rope_theta is not None and self.compare_rope_theta <= 0:
            raise ConfigError(f"`compare_rope_theta` {self.compare_rope_theta:g}: must be positive")


@dataclass(frozen=True)
class Score:
    variant: str
    phase: str  # "before" | "after N steps"
    sample: int
    target: int
    tokens: int  # actual prompt tokens
    exact: bool  # every key token is the greedy choice (given the answer's wording)
    answer_exact: bool  # the whole answer sentence is (greedy decoding writes exactly it)
    digits_right: int
    digits: int
    nll: float  # mean over key tokens


@dataclass
class Variant:
    label: str
    path: Path
    window: int
    rope: str
    temporary: bool = False  # a copy made for this run and removed after it


@dataclass
class ContextReport:
    settings: Settings
    variants: list[Variant]
    scores: list[Score]
    seconds: dict[str, float] = field(default_factory=dict)
    train_notes: list[str] = field(default_factory=list)

    def phases(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for score in self.scores:
            seen.setdefault((score.variant, score.phase), None)
        return list(seen)

    def summary(self, variant: str, phase: str, target: int) -> dict[str, float]:
        rows = [s for s in self.scores if (s.variant, s.phase, s.target) == (variant, phase, target)]
        if not rows:
            return {}
        return {
            "n": len(rows),
            "exact": sum(s.exact for s in rows) / len(rows),
            "exact_count": sum(s.exact for s in rows),
            "answer_exact": sum(s.answer_exact for s in rows) / len(rows),
            "digits": sum(s.digits_right for s in rows) / sum(s.digits for s in rows),
            "nll": sum(s.nll for s in rows) / len(rows),
            "tokens": sum(s.tokens for s in rows) / len(rows),
        }


# ---------------------------------------------------------------- scoring


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_sample_set(model, samples: list[ContextSample], *, reuse_cache: bool) -> dict[int, tuple[bool, int, float]]:
    """target length -> (whole answer exact, key tokens right, mean key NLL)."""
    import torch

    results, cache, cached = {}, None, []
    device = next(model.parameters()).device
    # A sliding-window cache drops old states and cannot be cut back to a prefix.
    reuse_cache = reuse_cache and facts.sliding_window(model.config.to_dict()) is None
    for sample in sorted(samples, key=lambda s: -len(s.tokens.input_ids)):  # longest first: its cache serves all
        k = sample.answer_length
        # The last k positions of prompt + answer[:-1] predict the answer's k tokens.
        seq = sample.tokens.input_ids[: sample.prompt_tokens + k - 1]
        start = min(_common_prefix(seq, cached), len(seq) - k) if (reuse_cache and cache is not None) else 0
        with torch.inference_mode():
            if start > 0:
                cache.crop(-(len(cached) - start))
                out = model(torch.tensor([seq[start:]], device=device), past_key_values=cache, logits_to_keep=k)
            else:
                out = model(torch.tensor([seq], device=device), use_cache=reuse_cache, logits_to_keep=k)
        cache, cached = (out.past_key_values, seq) if reuse_cache else (None, [])
        logits = out.logits[0, -k:].float()
        want = torch.tensor(sample.answer_ids, device=device)
        hits = logits.argmax(-1) == want
        keys = list(sample.key_positions)
        nll = -torch.log_softmax(logits[keys], -1).gather(1, want[keys][:, None]).mean()
        results[sample.target_tokens] = (bool(hits.all()), int(hits[keys].sum()), float(nll))
    return results


# ---------------------------------------------------------------- resumable store


class ResultStore:
    """``results.jsonl``: a settings header, then one line per scored sample."""

    def __init__(self, path: Path, settings: Settings):
        self.path = path
        self.header = json.loads(json.dumps({"settings": asdict(settings)}))  # as read back (tuples -> lists)
        self.scores: list[Score] = []
        if path.is_file():
            lines = path.read_text().splitlines()
            if lines and _loads(lines[0]) == self.header:
                self.scores = [Score(**row) for row in map(_loads, lines[1:]) if row]  # a torn last line is skipped
            else:
                path.replace(path.with_suffix(".jsonl.old"))
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append(self.header)

    def done(self, variant: str, phase: str, sample: int) -> bool:
        return any((s.variant, s.phase, s.sample) == (variant, phase, sample) for s in self.scores)

    def add(self, score: Score) -> None:
        self.scores.append(score)
        self._append(asdict(score))

    def _append(self, row: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _loads(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


# ---------------------------------------------------------------- the run


def _load_model(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, device_dtype()), attn_implementation="sdpa")
    return (model.cuda() if torch.cuda.is_available() else model).eval()


def _score_phase(model, variant, phase, eval_sets, store, bar) -> None:
    for index, samples in enumerate(eval_sets):
        if not store.done(variant.label, phase, index):
            results = score_sample_set(model, samples, reuse_cache=True)
            for sample in samples:
                answer_exact, right, nll = results[sample.target_tokens]
                store.add(
                    Score(
                        variant.label,
                        phase,
                        index,
                        sample.target_tokens,
                        sample.prompt_tokens,
                        right == len(sample.key_positions),
                        answer_exact,
                        right,
                        len(sample.key_positions),
                        nll,
                    )
                )
        bar.update(1)


def _finetune(model, maker: SampleMaker, settings: Settings, longest: int):
    """LoRA on fresh samples at the longest length, through the fine-tuning engine."""
    config = FinetuneConfig(
        steps=settings.finetune_steps,
        learning_rate=settings.learning_rate,
        lora_rank=settings.lora_rank,
        lora_alpha=float(settings.lora_rank),
        warmup_steps=min(10, max(1, settings.finetune_steps // 10)),
        seed=settings.seed,
    )

    def example(step: int, rng: random.Random):
        return maker.make(rng, [longest], f"train{step}")[0].tokens

    peft_model = attach_lora(model, config)
    result = train_examples(peft_model, example, config, max_steps=settings.finetune_steps, progress=False)
    return peft_model, result


def run_context_check(
    settings: Settings,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> ContextReport:
    out_dir = Path(out_dir)
    path = model_folder(settings.model)
    cfg = read_config(path)
    window = model_window(cfg)
    tokenizer = load_tokenizer(path)
    maker = SampleMaker(tokenizer)
    lengths = sorted(settings.lengths)
    eval_sets = [
        maker.make(random.Random(f"{settings.seed}-eval-{i}"), lengths, f"eval{i}") for i in range(settings.samples)
    ]
    store = ResultStore(out_dir / "results.jsonl", settings)
    report = ContextReport(settings, [Variant("as given", path, window, facts.rope_summary(cfg) or "none")], [])

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".variants.") as tmp:
        if settings.compare_rope_theta is not None:
            target = max(lengths[-1], window)
            copy = extend_context(path, Path(tmp) / "theta", max_len=target, rope_theta=settings.compare_rope_theta)
            label = f"theta {settings.compare_rope_theta:g}, window {target}"
            rope = f"theta {settings.compare_rope_theta:g}"
            report.variants.append(Variant(label, copy.destination, target, rope, temporary=True))
        phases_per_variant = 2 if settings.finetune_steps else 1
        total = len(report.variants) * phases_per_variant * len(eval_sets)
        with progress_bar(total=total, desc="check-context", unit="sample", enabled=progress) as bar:
            for variant in report.variants:
                started = time.perf_counter()
                phases = ["before"] + ([f"after {settings.finetune_steps} steps"] if settings.finetune_steps else [])
                todo = [p for p in phases if not all(store.done(variant.label, p, i) for i in range(len(eval_sets)))]
                bar.update(len(eval_sets) * (len(phases) - len(todo)))
                if not todo:
                    continue  # all on disk from an earlier run: no model to load
                model = _load_model(variant.path)
                if "before" in todo:
                    _score_phase(model, variant, "before", eval_sets, store, bar)
                if phases[1:] and phases[1] in todo:
                    model, result = _finetune(model, maker, settings, lengths[-1])
                    model.eval()
                    report.train_notes.append(f"{variant.label}: {result.summary()}")
                    _score_phase(model, variant, phases[1], eval_sets, store, bar)
                report.seconds[variant.label] = time.perf_counter() - started
                del model
    report.scores = list(store.scores)
    return report


# ---------------------------------------------------------------- output


def markdown_table(report: ContextReport) -> str:
    phases = report.phases()
    header = ["target tokens", "prompt tokens (mean)"] + [f"{v} ({p})" for v, p in phases]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for target in sorted(report.settings.lengths):
        cells, tokens = [], None
        for variant, phase in phases:
            s = report.summary(variant, phase, target)
            if not s:
                cells.append("-")
                continue
            tokens = s["tokens"]
            cells.append(f"{s['exact_count']}/{s['n']} (digits {100 * s['digits']:.0f}%, NLL {s['nll']:.2f})")
        lines.append(f"| {target} | {'-' if tokens is None else f'{tokens:.0f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: ContextReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(report.settings.lengths)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    markers = "osD^v<>"
    for n, (variant, phase) in enumerate(report.phases()):
        xs = [report.summary(variant, phase, t).get("tokens") for t in lengths]
        style = {"marker": markers[n % len(markers)], "linestyle": "-" if phase == "before" else "--", "alpha": 0.85}
        for axis, key in zip(axes, ("exact", "digits")):
            ys = [report.summary(variant, phase, t).get(key) for t in lengths]
            points = [(x, y) for x, y in zip(xs, ys) if x is not None]
            if points:
                axis.plot(*zip(*points), label=f"{variant} ({phase})", **style)
    low, high = lengths[0] / 1.3, lengths[-1] * 1.3
    window = report.variants[0].window
    for axis, title in zip(axes, ("key recalled exactly (greedy)", "key digits right (greedy)")):
        if window and low <= window <= high:
            axis.axvline(window, color="grey", linestyle=":", linewidth=1)
            axis.text(window, 1.03, f"trained window {window}", color="grey", fontsize=8, ha="center")
        axis.set_xscale("log", base=2)
        axis.set_xlim(low, high)
        axis.set_xticks(lengths, [str(t) for t in lengths])
        axis.minorticks_off()
        axis.set_ylim(-0.05, 1.1)
        axis.set_xlabel("prompt tokens")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    axes[1].axhline(0.1, color="grey", linestyle="--", linewidth=0.8)
    axes[1].text(lengths[0], 0.12, "chance (1 digit in 10)", color="grey", fontsize=8)
    axes[0].set_ylabel(f"share of {report.settings.samples} samples")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{report.variants[0].path.name}: key recall vs prompt length", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_outputs(report: ContextReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    out_dir = Path(out_dir)
    table = markdown_table(report)
    written = {"table": write_text_atomic(out_dir / "table.md", table + "\n")}
    written["plot"] = plot(report, out_dir / "accuracy.png")
    return written
