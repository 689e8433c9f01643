"""Device check (issue 9): the kernel on a CUDA GPU, T4 precision forced.

The lent GPU machine has torch, transformers, peft and accelerate but no vLLM and no
network, so this runs ``kernel/main.py`` with the transformers backend, fp16 training
with the gradient scaler and fp16 serving (as on a T4), on a random-weight model of
SmolLM2-135M's exact shape (costs do not depend on weight values; the real weights
are too big to carry). It proves the worker's CUDA path: one worker per GPU, engine
before training, per-task deadlines, fp16 + GradScaler, adapters saved in fp16 and
served, peak memory per task.

    # here: copy what the device needs (config, tokenizer, tasks) into runs/device-inputs
    .venv/bin/python bench/device_kernel.py prepare runs/device-inputs
    # there (carry runs/device-inputs):
    PYTHONPATH=src python bench/device_kernel.py run runs/device-inputs --out $OUT --budget 240
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
SETTINGS = """\
# T4 precision on any GPU: fp16 training with the gradient scaler, fp16 serving.
[prompt]
max_seq_len = 8192
[finetune]
precision = "fp16"
lora_rank = 32
[inference]
backend = "transformers"
dtype = "float16"
num_augmentations = 8
score_augmentations = 4
max_candidates = 4
[kernel]
max_steps = 300
"""


def prepare(dst: Path, count: int) -> None:
    from arcsub.models.default import default_model_dir
    from arcsub.tasks import load_tasks, tasks_to_challenges

    model = default_model_dir()
    dst.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (model / name).is_file():
            shutil.copy(model / name, dst / name)
    tasks = load_tasks("arc1/evaluation").tasks
    ordered = sorted(tasks, key=lambda t: t.cells)
    # small to large: prompts from a few hundred to about 8k tokens (the largest tasks
    # do not fit an 8k window at all)
    quantiles = [0.85 * i / max(1, count - 1) for i in range(count)]
    chosen = [ordered[int(q * (len(ordered) - 1))] for q in quantiles]
    (dst / "arc-agi_test_challenges.json").write_text(json.dumps(tasks_to_challenges(chosen)))
    print(f"prepared {dst}: {[t.id for t in chosen]}, cells {[t.cells for t in chosen]}")


def build_tree(inputs: Path, root: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    competition = root / "input" / "competitions" / "arc-prize-2024"
    competition.mkdir(parents=True, exist_ok=True)
    shutil.copy(inputs / "arc-agi_test_challenges.json", competition)
    model_dir = root / "input" / "arcsub-model"
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (inputs / name).is_file():
            shutil.copy(inputs / name, model_dir / name)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(model_dir)
    AutoModelForCausalLM.from_config(config, dtype=torch.float16).save_pretrained(model_dir)
    (model_dir / "arcsub.toml").write_text(SETTINGS)
    return root


def run(inputs: Path, out: Path, budget: float, profile: str) -> int:
    root = build_tree(inputs, Path("/tmp/arcsub-device-kaggle"))
    working = out / "working"
    # the run request (arcsub.kernel.RunRequest) written plainly: this script runs without arcsub importable
    (root / "input" / "arcsub-run.json").write_text(json.dumps({"competition": profile, "budget_s": budget}))
    env = dict(os.environ, KAGGLE_IS_COMPETITION_RERUN="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    started = time.time()
    done = subprocess.run(
        [sys.executable, str(REPO / "kernel" / "main.py"), "--input-root", str(root / "input"),
         "--working-root", str(working), "--temp-root", str(root / "temp")],
        env=env,
        check=False,  # the report says what happened
    )  # fmt: skip
    print(f"kernel exit {done.returncode} after {time.time() - started:.0f}s")
    report = working / "report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        print(data["summary"])
        for task, stats in data["per_task"].items():
            train = stats.get("train") or {}
            print(
                f"{task}: cells {stats['cells']}, steps {train.get('steps')}/{stats['plan']['steps']}, "
                f"stop {train.get('stop_reason')}, scaler skips {train.get('scaler_skips')}, "
                f"train {train.get('seconds')}s, infer {stats['infer_s']}s, peak {stats.get('peak_gpu_gib')} GiB, "
                f"source {stats['source']}"
            )
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dst", type=Path)
    p.add_argument("--tasks", type=int, default=4)
    r = sub.add_parser("run")
    r.add_argument("inputs", type=Path)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    r.add_argument("--budget", type=float, default=240)
    r.add_argument("--profile", default="arc-prize-2024")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.dst, args.tasks)
        return 0
    return run(args.inputs, args.out, args.budget, args.profile)


if __name__ == "__main__":
    sys.exit(main())
