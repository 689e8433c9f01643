"""The embedded default, ARC-pre-trained: a small fp16 LoRA adapter shipped as package
data (``models/pretrained/``), merged into the converted chat model on first use and
cached beside it, as the conversion is.

``default`` names this model; ``default-chat`` the chat model as its makers shipped it
(which has never seen ARC). The adapter folder holds the training manifest (what it
was trained on, for the leakage guard) and ``RECIPE.md``, the command that reproduces
it. The merged folder carries the manifest too, so ``arcsub evaluate`` refuses to
score ``default`` on the tasks it was pre-trained on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from ..console import say
from ..errors import ModelNotFoundError
from ..io import file_sha256
from .default import STAMP_FILE, cache_root, default_model_dir, stamped_folder

ADAPTER_DIR = Path(__file__).parent / "pretrained"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MERGED_DIRNAME = "SmolLM2-135M-Instruct-arc"
# Bump when the merge changes what it writes: old caches are then rebuilt.
MERGER_VERSION = 1


def shipped_adapter() -> Path:
    """The package's adapter folder; a clear error when the install lost it."""
    if not (ADAPTER_DIR / ADAPTER_WEIGHTS).is_file() or not (ADAPTER_DIR / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"{ADAPTER_DIR}: the pre-trained default's adapter is missing from this install; reinstall arcsub "
            "(or use --model default-chat, the model without ARC pre-training)"
        )
    return ADAPTER_DIR


def _wanted_stamp(base: Path, adapter: Path) -> dict:
    from ..leakage import TRAINING_MANIFEST

    # The manifest too: the merged folder carries a copy, which the leakage guard reads.
    return {
        "base": json.loads((base / STAMP_FILE).read_text()),
        "adapter_sha256": file_sha256(adapter / ADAPTER_WEIGHTS),
        "manifest_sha256": file_sha256(adapter / TRAINING_MANIFEST),
        "merger_version": MERGER_VERSION,
    }


def pretrained_default_dir(*, notify: Callable[[str], None] = say) -> Path:
    """The merged pre-trained default, merging on first use (and after an upgrade)."""
    base = default_model_dir(notify=notify)
    adapter = shipped_adapter()
    target = cache_root() / "models" / MERGED_DIRNAME
    message = f"merging the ARC pre-trained adapter into the default model in {target} (once; seconds)"
    return stamped_folder(
        target, _wanted_stamp(base, adapter), lambda tmp: merge_adapter(base, adapter, tmp), message, notify
    )


def merge_adapter(base: Path, adapter: Path, out_dir: Path) -> None:
    """``base`` + ``adapter`` as one plain model folder (the base's dtype), with the
    adapter's training manifest."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..leakage import TRAINING_MANIFEST

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(out_dir)
    shutil.copyfile(adapter / TRAINING_MANIFEST, out_dir / TRAINING_MANIFEST)


MAX_ADAPTER_BYTES = 10 * 2**20  # package data stays small: a wheel, not a model download
SHIPPED_BASE_NAME = "SmolLM2-135M-Instruct"  # the adapter merges onto the converted chat model
