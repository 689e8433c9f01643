"""The held-out slice the default's pre-training is judged on (docs/results.md, issue 22).

Draws N tasks of arc1/evaluation with a fixed seed among those whose every full prompt
(all train pairs, the test input and its answer) fits the window the kernel serves
(``inference.max_model_len`` of the config); the rest are excluded and counted. Not the
smallest: a uniform draw over what fits. Written once, before any run, to
``bench/heldout-<N>.json``; the evaluations read its ``selector``.

    .venv/bin/python bench/heldout_slice.py [--count 40] [--seed 20261203]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from arcsub.config import load_config
from arcsub.models import resolve_model
from arcsub.models.loading import load_tokenizer
from arcsub.prompts import PromptBuilder
from arcsub.tasks import load_tasks


def longest_prompt(builder: PromptBuilder, task) -> int:
    return max(builder.count_tokens(builder.build(task, i).text) for i in range(len(task.test)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="arc1/evaluation")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--config", default="configs/cpu-smoke.toml")
    args = parser.parse_args()

    config = load_config(args.config)
    window = config.inference.max_model_len
    builder = PromptBuilder(config.prompt, load_tokenizer(resolve_model("default")))
    tasks = load_tasks(args.data).tasks
    tokens = {task.id: longest_prompt(builder, task) for task in tasks}
    fitting = sorted(task_id for task_id, n in tokens.items() if n <= window)
    chosen = sorted(random.Random(args.seed).sample(fitting, args.count))
    out = Path(__file__).parent / f"heldout-{args.count}.json"
    record = {
        "data": args.data,
        "seed": args.seed,
        "window": window,
        "config": args.config,
        "tasks_in_data": len(tasks),
        "excluded_too_long": len(tasks) - len(fitting),
        "task_ids": chosen,
        "prompt_tokens": {task_id: tokens[task_id] for task_id in chosen},
        "selector": f"{args.data}[{','.join(chosen)}]",
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{out}: {args.count} of {len(fitting)} tasks that fit {window} tokens ({len(tasks) - len(fitting)} do not)")


if __name__ == "__main__":
    main()
