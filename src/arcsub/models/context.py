"""``arcsub model extend-context``: a copy of a model with a longer context window.

Only two small files change: ``config.json`` (the window and the RoPE settings) and
``tokenizer_config.json`` (``model_max_length``). Weights are hard-linked (copied when
the destination is on another file system), never rewritten; a linked file is the
source's own, so nothing may later save over the destination in place. Training (transformers)
and inference (vLLM) then read the new window with no code change:

* ``--rope-theta T``: ``max_position_embeddings = N``, RoPE base ``T``. What the
  research did (SmolLM theta 1e4 -> 1e5 for 8k prompts); needs fine-tuning to pay off.
* ``--rope-scaling linear|dynamic --factor F``: positions are compressed by ``F``.
  ``max_position_embeddings`` stays the trained window (dynamic scaling measures from
  it, and vLLM multiplies it by ``F``), so ``N`` must be at most window × F.
* ``--rope-scaling yarn --factor F``: ``max_position_embeddings = N`` with
  ``original_max_position_embeddings`` = the trained window, as YaRN expects.
* neither: only the window grows (plain RoPE extrapolation, usually poor).

The RoPE settings are written as ``rope_parameters`` (transformers 5, vLLM 0.32) and
mirrored into the older ``rope_theta`` / ``rope_scaling`` keys so that a pinned older
transformers reads the same values. The result is read back with transformers before
the destination appears.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelPreparationError
from ..io import atomic_dir
from . import config_facts as facts
from .loading import read_config

SCALINGS = ("linear", "dynamic", "yarn")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Files rewritten here; everything else is carried over unchanged.
REWRITTEN = ("config.json", "tokenizer_config.json")


@dataclass
class ExtendResult:
    destination: Path
    old_window: int
    new_window: int
    rope_parameters: dict[str, Any]
    linked: list[str]  # weight files hard-linked
    copied: list[str]  # weight files copied (another file system)
    notes: list[str]


def _rope_from_transformers(src: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The RoPE parameters transformers derives for this model; refuses architectures
    without RoPE (absolute or ALiBi positions) and remote-code ones it cannot read."""
    from transformers import AutoConfig

    model_type = cfg.get("model_type")
    try:
        config = AutoConfig.for_model(model_type) if cfg.get("auto_map") is None else None
    except ValueError:
        config = None
    if config is None:
        raise ModelPreparationError(
            f"{src}/config.json: model_type {model_type!r} is not known to transformers (remote code); "
            "its window cannot be extended here"
        )
    if not getattr(config, "rope_parameters", None):
        raise ModelPreparationError(
            f"{src}/config.json: {model_type} has no rotary position embeddings (RoPE); its positions are "
            "learned or ALiBi and this command cannot extend them: pick a RoPE model (llama, mistral, qwen2, ...)"
        )
    loaded = AutoConfig.from_pretrained(src)
    params = dict(loaded.rope_parameters)
    if any(isinstance(v, dict) for v in params.values()):
        raise ModelPreparationError(f"{src}/config.json: per-layer RoPE parameters are not supported by this command")
    return params


def plan_rope(
    old: dict[str, Any],
    window: int,
    max_len: int,
    rope_theta: float | None,
    scaling: str | None,
    factor: float | None,
) -> tuple[dict[str, Any], int]:
    """New ``rope_parameters`` and ``max_position_embeddings`` for the request."""
    if old.get("rope_type", "default") != "default":
        raise ModelPreparationError(
            f"the model already uses {old['rope_type']} RoPE scaling; extend the original (unscaled) model instead"
        )
    if rope_theta is not None and scaling is not None:
        raise ModelPreparationError("pass either `rope_theta` or `scaling`, not both")
    theta = old.get("rope_theta")
    if scaling is None:
        if factor is not None:
            raise ModelPreparationError("`factor` needs `scaling` linear|dynamic|yarn")
        if rope_theta is not None and rope_theta <= 0:
            raise ModelPreparationError(f"`rope_theta` {rope_theta}: must be positive")
        return {**old, "rope_type": "default", "rope_theta": rope_theta or theta}, max_len
    if scaling not in SCALINGS:
        raise ModelPreparationError(f"`scaling` {scaling}: choose one of {', '.join(SCALINGS)}")
    factor = factor if factor is not None else max_len / window
    if factor <= 1:
        raise ModelPreparationError(f"`factor` {factor:g}: must be above 1 to extend a {window}-token window")
    params = {**old, "rope_type": scaling, "rope_theta": theta, "factor": float(factor)}  # keeps partial rotary
    if scaling == "yarn":
        params["original_max_position_embeddings"] = window
        return params, max_len
    if max_len > window * factor:
        raise ModelPreparationError(
            f"`max_len` {max_len} exceeds {window} × factor {factor:g} = {int(window * factor)}; raise `factor`"
        )
    return params, window  # linear/dynamic: the trained window stays, scaled by factor


def _write_rope(cfg: dict[str, Any], params: dict[str, Any], window: int) -> dict[str, Any]:
    cfg = dict(cfg)
    cfg["max_position_embeddings"] = window
    cfg["rope_parameters"] = dict(params)
    cfg["rope_theta"] = params["rope_theta"]  # older transformers read these two keys
    legacy = {k: v for k, v in params.items() if k != "rope_theta"}
    cfg["rope_scaling"] = legacy if params["rope_type"] != "default" else None
    return cfg


def _carry_file(source: Path, target: Path, linked: list[str], copied: list[str]) -> None:
    if source.suffix in WEIGHT_SUFFIXES:
        try:
            os.link(source, target)
            linked.append(source.name)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
        copied.append(source.name)
    shutil.copy2(source, target)


def _check_written(tmp: Path, params: dict[str, Any], window: int) -> None:
    """Read the new folder back the way training does; a mismatch is a bug here."""
    from transformers import AutoConfig

    loaded = AutoConfig.from_pretrained(tmp)
    got = {k: loaded.rope_parameters.get(k) for k in params}
    if got != params or loaded.max_position_embeddings != window:
        raise RuntimeError(f"extend-context wrote {loaded.rope_parameters}, {loaded.max_position_embeddings}")


def extend_context(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    max_len: int,
    rope_theta: float | None = None,
    scaling: str | None = None,
    factor: float | None = None,
) -> ExtendResult:
    src, dst = Path(src), Path(dst)
    cfg = read_config(src)
    if dst.exists():
        raise ModelPreparationError(f"{dst}: already exists; choose a new destination folder or remove it")
    old = _rope_from_transformers(src, cfg)
    window = facts.context_window(cfg)
    if window is None:
        raise ModelPreparationError(f"{src}/config.json: no max_position_embeddings; cannot tell today's window")
    if max_len < window:
        raise ModelPreparationError(
            f"`max_len` {max_len} is shorter than the model's window of {window} tokens; "
            f"give a longer target (or use the model as it is)"
        )
    if max_len == window and rope_theta is None and scaling is None:
        raise ModelPreparationError(f"`max_len` {max_len} is already the window and no RoPE change was asked")
    params, new_window = plan_rope(old, window, max_len, rope_theta, scaling, factor)

    notes = []
    slide = facts.sliding_window(cfg)
    if slide is not None and slide < max_len:
        notes.append(f"sliding_window {slide}: attention still sees only the last {slide} tokens")
    linked: list[str] = []
    copied: list[str] = []
    with atomic_dir(dst) as tmp:
        for source in sorted(src.iterdir()):
            if source.is_file() and source.name not in REWRITTEN:
                _carry_file(source, tmp / source.name, linked, copied)
        (tmp / "config.json").write_text(json.dumps(_write_rope(cfg, params, new_window), indent=2) + "\n")
        tokenizer_config = src / "tokenizer_config.json"
        if tokenizer_config.is_file():
            values = json.loads(tokenizer_config.read_text())
            values["model_max_length"] = max_len
            (tmp / "tokenizer_config.json").write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n")
        else:
            notes.append("no tokenizer_config.json in the source: model_max_length not set")
        _check_written(tmp, params, new_window)
    return ExtendResult(dst, window, max_len, params, linked, copied, notes)
