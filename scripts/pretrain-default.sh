#!/usr/bin/env bash
# Reproduces the pre-trained default's adapter (src/arcsub/models/pretrained/):
# SmolLM2-135M-Instruct (default-chat), LoRA r=8, pre-trained on arc1/training only
# (every evaluation set held out), 300 steps of one leave-one-out prompt each,
# prompts up to 1024 tokens (longer tasks are left out), then packed as fp16.
# Measured: 2026-11-28, 2-core CPU shared with other work (niced): 300 steps in
# 1362 s, 128 tokens/s, mean loss 0.83 over the first 50 steps, 0.56 over the last 50
# (docs/results.md). That run was started as `--model default` before `default`
# named the pre-trained model, i.e. on the chat model, as below.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/pretrain-default}"
.venv/bin/arcsub finetune --model default-chat --data arc1/training --out "$OUT" \
    --steps 300 --rank 8 --lr 3e-4 --max-seq-len 1024 --checkpoint-every 50
.venv/bin/arcsub model pack-default "$OUT/adapter" --recipe scripts/pretrain-default.sh
