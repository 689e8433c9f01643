"""The answer loss of each held-out task's test outputs under the shipped default and a
candidate, task by task: a paired measure next to bench/default_comparison.py's
solved-task counts, which at this model size are too few to tell two defaults apart.

Each task's prompts are those the validation loss uses (``finetune.validation``): its
train pairs as examples, each test input as the question, no augmentation, no
test-time fine-tuning; the loss is the mean cross-entropy of the known answer's tokens.
Lower is better. The candidate is ahead on a task when its loss there is lower; the
sign test and the paired bootstrap are ``arcsub compare``'s (over negated losses).
Writes ``--out`` (JSON) and prints a summary.

    .venv/bin/python bench/heldout_loss.py runs/default-comparison/candidate-model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from arcsub.config import load_config
from arcsub.evaluate.compare import paired_statistics
from arcsub.finetune.loop import answer_loss
from arcsub.finetune.precision import Precision
from arcsub.finetune.validation import ValidationSet
from arcsub.io import write_json_atomic
from arcsub.models import resolve_model
from arcsub.models.loading import load_tokenizer
from arcsub.prompts import PromptBuilder
from arcsub.tasks import load_tasks


def task_losses(model_dir: Path, tasks, config) -> dict[str, float]:
    """Mean answer loss per task (tasks whose prompts cannot fit are left out)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    builder = PromptBuilder(config.prompt, load_tokenizer(model_dir))
    losses = {}
    with torch.no_grad():
        for task in tasks:
            prompts = ValidationSet.build([task], builder, config).prompts
            if prompts:
                values = [float(answer_loss(model, p, torch.device("cpu"), Precision("fp32"))) for p in prompts]
                losses[task.id] = sum(values) / len(values)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", type=Path, help="the candidate's merged model folder")
    parser.add_argument("--slice", type=Path, default=Path(__file__).parent / "heldout-40.json")
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    parser.add_argument("--out", type=Path, default=Path("runs/default-comparison/heldout-loss.json"))
    args = parser.parse_args()

    config = load_config(args.config)
    tasks = load_tasks(json.loads(args.slice.read_text())["selector"]).tasks
    models = {"shipped": resolve_model("default"), "candidate": args.candidate}
    losses = {}
    for name, folder in models.items():
        began = time.time()
        losses[name] = task_losses(folder, tasks, config)
        mean = sum(losses[name].values()) / len(losses[name])
        print(f"{name}: mean answer loss {mean:.4f} over {len(losses[name])} tasks ({time.time() - began:.0f} s)")
    shared = sorted(set(losses["shipped"]) & set(losses["candidate"]))
    pair = paired_statistics(
        [-losses["candidate"][t] for t in shared], [-losses["shipped"][t] for t in shared], a="candidate", b="shipped"
    )
    print(
        f"candidate lower on {pair.a_wins} of {pair.tasks} tasks, shipped lower on {pair.b_wins}; "
        f"sign test p = {pair.sign_test_p:.2g}; loss lower by {pair.mean_difference:.4f} "
        f"(95% bootstrap {pair.ci_low:.4f} to {pair.ci_high:.4f})"
    )
    write_json_atomic(
        args.out,
        {
            "slice": str(args.slice),
            "config": args.config,
            "models": {name: str(folder) for name, folder in models.items()},
            "losses": losses,
            "candidate_lower_by": {
                "mean": pair.mean_difference,
                "ci95": [pair.ci_low, pair.ci_high],
                "candidate_lower": pair.a_wins,
                "shipped_lower": pair.b_wins,
                "sign_test_p": pair.sign_test_p,
                "resamples": pair.resamples,
                "seed": pair.seed,
            },
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
