#!/usr/bin/env bash
# The default's ARC pre-training recipe: its data and its sizing are in
# scripts/pretrain_default.py (--help). Its adapter replaces the shipped one
# (src/arcsub/models/pretrained/, whose RECIPE.md holds the command that made it) only
# after winning the held-out comparison in docs/results.md; it has not yet. A run:
#   scripts/pretrain-default.sh --minutes 60 --device cpu --out runs/pretrain-default
# Run again with the same --out to resume from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/pretrain_default.py "$@"
